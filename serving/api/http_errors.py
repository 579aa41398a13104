"""How every error becomes an HTTP answer, in one place: ``{"detail": "..."}`` (``{"error":
"..."}`` on KServe V2's /v2 routes, as that protocol's clients read it) with the status HTTP
gives the error's type (RequestError, ``serving.http_status``), 503 + Retry-After (NotReady),
nothing at all for a client that hung up (ClientGone, counted as 499), and FastAPI's own
404/405/422 in the same shape."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from serving.core.errors import ClientGone, NotReady, RequestError
from serving.http_status import http_headers, http_status

CLIENT_CLOSED = 499  # nginx's code for "client closed the request": counted, never sent
log = logging.getLogger("serving.api.app")


V2_PREFIX = "/v2"  # KServe V2 (Open Inference Protocol) clients read {"error": ...} instead


def error_response(
    status: int, detail: str, headers: dict[str, str] | None = None, path: str = ""
) -> JSONResponse:
    key = "error" if path == V2_PREFIX or path.startswith(V2_PREFIX + "/") else "detail"
    return JSONResponse({key: detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """The handlers; ``routers`` are the app's routers (a 405 names every method of a path)."""
    allowed = _allowed_methods([*app.router.routes, *(r for rt in routers for r in rt.routes)])

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(http_status(exc), str(exc), http_headers(exc), request.url.path)

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
        retry = {"Retry-After": str(exc.retry_after_s)}
        return error_response(http_status(exc), str(exc), retry, request.url.path)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, _: ClientGone) -> Response:
        log.info("serving.client_gone path=%s", request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # name every method of the path, not just the first route's
            headers["Allow"] = ", ".join(allowed(request.url.path))
        return error_response(exc.status_code, str(exc.detail), headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        return error_response(422, detail, path=request.url.path)


def _allowed_methods(routes: Sequence[BaseRoute]) -> Callable[[str], list[str]]:
    """The methods of a request path: those of every route whose template matches it, so a
    templated path (``/v2/models/{name}/infer``) names them as a fixed one does."""
    templates: dict[str, tuple[re.Pattern[str], set[str]]] = {}
    for route in routes:
        path, regex = getattr(route, "path", None), getattr(route, "path_regex", None)
        if path is not None and regex is not None:
            methods = getattr(route, "methods", None) or ()
            templates.setdefault(path, (regex, set()))[1].update(methods)

    def allowed(path: str) -> list[str]:
        matching = (names for regex, names in templates.values() if regex.match(path))
        return sorted(set().union(*matching))

    return allowed
