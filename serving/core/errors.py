"""Serving's errors (see models/errors.py for the whole tree): what the service answers with a
4xx (or 503 while no model is ready), never a 500, and what its client and tools raise."""

from __future__ import annotations

from models.errors import DatasetError as DatasetError  # re-exported: raised by serving too
from models.errors import UserFacingError


class RequestError(UserFacingError):
    """A request the client must change: answered with ``status`` and ``{"detail": message}``."""

    def __init__(
        self, message: str, status: int = 422, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers  # e.g. WWW-Authenticate on a 401


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
