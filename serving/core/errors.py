"""Serving's errors (see models/errors.py for the whole tree): what the service answers with a
4xx (or 503 while no model is ready), never a 500, and what its client and tools raise."""

from __future__ import annotations

from models.errors import DatasetError as DatasetError  # re-exported: raised by serving too
from models.errors import UserFacingError


class RequestError(UserFacingError):
    """A request the client must change. The subclass says why; each protocol turns that into
    its own answer in one place (HTTP: ``serving/http_status.py``), so no status number is
    written where the error is raised. ``headers`` are response headers that help the caller
    (e.g. the most images a filtered request may ask for)."""

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers


class InvalidRequest(RequestError):
    """The request is well formed but a value breaks the contract (out of range, wrong type,
    a repeated key, something the loaded model cannot make)."""


class MalformedRequest(RequestError):
    """The bytes are not a request: not JSON, nested too deep, a protocol's shape broken."""


class UnsupportedMediaType(RequestError):
    """A body not declared as JSON."""


class TooLarge(RequestError):
    """A body, or the work it asks for, above what this server ever takes."""


class BodyTimeout(RequestError):
    """The request body did not arrive in time."""


class UnknownModel(RequestError):
    """A model or version this server does not serve."""


class UnsupportedByVersion(RequestError):
    """The served version cannot do what was asked (filtering without its classifier)."""


class NotAuthenticated(RequestError):
    """An admin request without the right token."""


class AdminDisabled(RequestError):
    """Admin requests while no admin token is configured."""


class NotReady(UserFacingError):
    """No verified model is loaded yet, or the queue is full: 503 with a Retry-After (seconds)."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientGone(Exception):
    """The client hung up before its answer was ready: its work is dropped, nothing is sent."""


class ModelLoadError(UserFacingError):
    """A version could not be loaded (checksum, ONNX load, warm-up); the old model keeps serving."""


class ServiceError(UserFacingError):
    """The service refused a request (its ``detail`` is the message) or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ArchiveError(UserFacingError):
    """A TorchServe archive could not be built; nothing was written to the model store."""


class HandlerConfigError(UserFacingError):
    """The model's files or settings are unusable: the TorchServe worker must not come up."""
