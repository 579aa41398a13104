"""HTTP's reading of the serving errors, in one place for every HTTP protocol here (REST and
KServe V2 in serving/api, the TorchServe handler): the core raises typed errors
(serving/core/errors.py) and never writes a status number."""

from __future__ import annotations

from typing import Any

from serving.core.errors import (
    AdminDisabled,
    BodyTimeout,
    InvalidRequest,
    MalformedRequest,
    NotAuthenticated,
    NotReady,
    RequestError,
    TooLarge,
    UnknownModel,
    UnsupportedByVersion,
    UnsupportedMediaType,
)

STATUS: dict[type[Exception], int] = {
    MalformedRequest: 400,
    NotAuthenticated: 401,
    AdminDisabled: 403,
    UnknownModel: 404,
    BodyTimeout: 408,
    UnsupportedByVersion: 409,
    TooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidRequest: 422,
    NotReady: 503,  # with Retry-After (serving/api/http_errors.py)
}
# Headers HTTP itself asks for with a status (RFC 9110: a 401 names its scheme).
PROTOCOL_HEADERS: dict[type[RequestError], dict[str, str]] = {
    NotAuthenticated: {"WWW-Authenticate": "Bearer"},
}


def http_status(exc: Exception) -> int:
    """The status of the nearest error class HTTP names; any other RequestError is a 422."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 422


def http_headers(exc: RequestError) -> dict[str, str] | None:
    """The error's own headers and those HTTP requires with its status, or None."""
    found = next((PROTOCOL_HEADERS[c] for c in type(exc).__mro__ if c in PROTOCOL_HEADERS), {})
    merged = {**found, **(exc.headers or {})}
    return merged or None


def documented_errors(
    errors: tuple[type[Exception], ...],
    text: dict[type[Exception], str],
    schema: dict[str, Any],
    headers: dict[type[Exception], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """OpenAPI answers of the errors a route raises: each under its status (``STATUS``), in
    status order, described by ``text``, with a JSON body of ``schema`` (and ``headers``)."""
    answers: dict[int, dict[str, Any]] = {}
    for error in errors:
        answer: dict[str, Any] = {
            "description": text[error],
            "content": {"application/json": {"schema": schema}},
        }
        if headers and error in headers:
            answer["headers"] = headers[error]
        answers[STATUS[error]] = answer
    return {str(status): answers[status] for status in sorted(answers)}
