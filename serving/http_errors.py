"""How every error becomes an HTTP answer, in one place: ``{"detail": "..."}`` with the status
the error carries (RequestError), 503 + Retry-After (NotReady), nothing at all for a client that
hung up (ClientGone, counted as 499), and FastAPI's own 404/405/422 in the same shape."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from serving.errors import ClientGone, NotReady, RequestError

CLIENT_CLOSED = 499  # nginx's code for "client closed the request": counted, never sent
log = logging.getLogger("serving.app")


V2_PREFIX = "/v2"  # KServe V2 (Open Inference Protocol) clients read {"error": ...} instead


def error_response(
    status: int, detail: str, headers: dict[str, str] | None = None, path: str = ""
) -> JSONResponse:
    key = "error" if path == V2_PREFIX or path.startswith(V2_PREFIX + "/") else "detail"
    return JSONResponse({key: detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """The handlers; ``routers`` are the app's routers (a 405 names every method of a path)."""
    allowed = _methods_by_path([*app.router.routes, *(r for rt in routers for r in rt.routes)])

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, str(exc), exc.headers, request.url.path)

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
        retry = {"Retry-After": str(exc.retry_after_s)}
        return error_response(503, str(exc), retry, request.url.path)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, _: ClientGone) -> Response:
        log.info("serving.client_gone path=%s", request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # name every method of the path, not just the first route's
            headers["Allow"] = ", ".join(allowed.get(request.url.path, []))
        return error_response(exc.status_code, str(exc.detail), headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        return error_response(422, detail, path=request.url.path)


def _methods_by_path(routes: Sequence[BaseRoute]) -> dict[str, list[str]]:
    methods: dict[str, set[str]] = {}
    for route in routes:
        path = getattr(route, "path", None)
        if path is not None:
            methods.setdefault(path, set()).update(getattr(route, "methods", None) or ())
    return {path: sorted(names) for path, names in methods.items()}
