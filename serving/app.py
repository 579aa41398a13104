"""The HTTP API (FastAPI over ONNX Runtime): /generate, /balance, models, health, metrics, admin.

Request bodies are read and validated by serving.schemas (the same code the TorchServe handler
uses), so every malformed input is a 4xx with one clear ``detail`` line; a 5xx would be a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from models.registry import ModelRegistry
from models.registry.settings import RegistrySettings, open_registry
from serving import encoding, openapi
from serving.batching import Batcher
from serving.errors import ClientGone, NotReady, RequestError
from serving.gallery import gallery_html
from serving.generation import Plan, plan_balance, plan_generate
from serving.lifecycle import (
    BackendFactory,
    FailureKind,
    LoadedModel,
    ModelManager,
    classify,
    onnx_factory,
)
from serving.metrics import MetricsMiddleware, ServiceMetrics
from serving.onnx_backend import inference_pool
from serving.schemas import (
    BalanceRequest,
    GenerateRequest,
    Limits,
    parse_body,
    parse_query,
)
from serving.settings import ServeSettings

ROUTES = {
    "/",
    "/generate",
    "/balance",
    "/models",
    "/healthz",
    "/readyz",
    "/metrics",
    "/admin/reload",
}
INLINE_MAX = 64  # bigger requests build latents and encode answers off the event loop
# /admin/reload: a refused version or an alias with nothing to load is the caller's to fix (409);
# every other failure is the server's trouble and is retried by polling (503).
RELOAD_STATUS = {FailureKind.REFUSED: 409, FailureKind.NOT_PUBLISHED: 409}
CLIENT_CLOSED = 499  # nginx's code for "client closed the request": counted, never sent
log = logging.getLogger("serving.app")
T = TypeVar("T")
M = TypeVar("M", GenerateRequest, BalanceRequest)


class ServiceState:
    """Everything a request handler needs, built once per app."""

    def __init__(
        self,
        settings: ServeSettings,
        manager: ModelManager,
        batcher: Batcher,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings = settings
        self.limits: Limits = settings.limits()
        self.manager = manager
        self.batcher = batcher
        self.metrics = metrics
        self.draining = False  # set on SIGTERM (serving/server.py): /readyz turns 503

    async def pixels(self, model: LoadedModel, plan: Plan) -> np.ndarray:
        """Run a plan through the batcher: admitted whole (or refused) before its latents exist."""
        ticket = self.batcher.admit(plan.size)
        try:
            sig = model.signature
            z = (
                plan.latent(sig)
                if plan.size <= INLINE_MAX
                else await run_in_threadpool(plan.latent, sig)
            )
            return await self.batcher.run(ticket, model.backend, z, plan.labels)
        finally:
            ticket.release()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled as soon as the client hangs up (its rows leave the queue)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone
    return task.result()


async def _disconnected(request: Request) -> None:
    """Returns when the ASGI server reports the client's disconnect (the body is read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(
    settings: ServeSettings | None = None,
    registry: ModelRegistry | None = None,
    *,
    cache_dir: Path | None = None,
    factory: BackendFactory | None = None,
) -> FastAPI:
    """The service. Defaults: settings and registry from the environment, ONNX Runtime backend."""
    settings = settings or ServeSettings()
    if registry is None or cache_dir is None:
        registry_settings = RegistrySettings()
        registry = registry or open_registry(registry_settings)
        cache_dir = cache_dir or registry_settings.cache_dir.expanduser()
    metrics = ServiceMetrics()
    workers, threads = inference_pool(settings.device, settings.workers, settings.threads)
    manager = ModelManager(
        registry,
        cache_dir,
        factory or onnx_factory(settings.device, threads),
        alias=settings.alias,
        warmup_sizes=tuple(sorted({1, min(settings.batch_max_images, settings.max_batch_size)})),
        keep_versions=settings.cache_versions,
    )
    batcher = Batcher(
        workers=workers,
        max_images=settings.batch_max_images,
        wait_s=settings.batch_wait_ms / 1000,
        max_queue_images=settings.max_queue_images,
        enabled=settings.batching,
        on_batch=metrics.observe_batch,
    )
    state = ServiceState(settings, manager, batcher, metrics)
    metrics.backlog.set_function(lambda: batcher.backlog)
    manager.on_change.append(lambda model: _record_model(metrics, model))
    manager.on_failure.append(lambda _: _record_failure(metrics, manager))
    metrics.from_cache.set_function(
        lambda: float(manager.current is not None and manager.current.source == "cache")
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        follower = asyncio.create_task(_follow_alias(manager, settings.poll_interval_s))
        try:
            yield
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await batcher.stop()

    app = FastAPI(
        title="dcgan-mnist-service",
        summary="Synthetic MNIST digits on demand from a conditional DCGAN (ONNX Runtime).",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = state
    _add_error_handlers(app)
    _add_routes(app, state)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=ROUTES)
    openapi.install(app, state.limits)
    return app


def _record_model(metrics: ServiceMetrics, model: LoadedModel) -> None:
    metrics.model.info({"model": model.name, "version": model.version})
    metrics.model_loaded.set(model.loaded_at.timestamp())
    metrics.reloads.labels("swapped").inc()


def _record_failure(metrics: ServiceMetrics, manager: ModelManager) -> None:
    metrics.reloads.labels("failed").inc()
    kind = manager.last_error_kind
    metrics.load_failures.labels(kind.name.lower() if kind else "unknown").inc()


async def _follow_alias(manager: ModelManager, interval_s: float) -> None:
    """Load the alias at start, then follow it. Until a model loads from the registry (none yet,
    or one served from the cache during an outage), retry at least every 5 s."""
    while True:
        with contextlib.suppress(Exception):  # logged and shown on /readyz by the manager
            await asyncio.to_thread(manager.refresh)
        current = manager.current
        if interval_s == 0 and current is not None and current.source == "registry":
            return
        loaded = current is not None and current.source == "registry"
        await asyncio.sleep(interval_s if loaded else min(interval_s or 5.0, 5.0))


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, _: ClientGone) -> Response:
        log.info("serving.client_gone path=%s", request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # name every method of the path, not just the first route's
            headers["Allow"] = ", ".join(_allowed_methods(app, request.url.path))
        return _error(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _error(422, f"{where}: {first['msg']}" if where else str(first["msg"]))


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        if getattr(route, "path", None) == path:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _json_body(request: Request, model: type[M], state: ServiceState) -> M:
    """The request's body, read within the limits and validated as ``model``."""
    body = await _read_body(request, state.limits.max_body_bytes, state.settings.body_timeout_s)
    return parse_body(model, body, request.headers.get("content-type"), state.limits)


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (before reading it all if it says so)
    and with 408 when it takes longer than ``timeout_s`` (a client trickling it holds a
    connection); a client that hangs up while sending it is ClientGone (no 5xx, no traceback)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body of {declared} bytes is above the limit of {limit}", 413)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise RequestError(f"request body is above the limit of {limit} bytes", 413)
    except ClientDisconnect:
        raise ClientGone from None
    except TimeoutError:
        raise RequestError(f"request body not received within {timeout_s:g} s", 408) from None
    return bytes(body)


def _add_routes(app: FastAPI, state: ServiceState) -> None:
    manager, metrics = state.manager, state.metrics

    async def generate(http: Request, request: GenerateRequest) -> Response:
        model = manager.require()
        plan = plan_generate(request, model.signature)
        pixels = await unless_disconnected(http, state.pixels(model, plan))
        meta = encoding.response_meta(model.name, model.version, plan.seed, plan.size)
        if plan.size <= INLINE_MAX:
            body, media_type = encoding.encode_images(pixels, plan.labels, request.format, meta)
        else:
            body, media_type = await run_in_threadpool(
                encoding.encode_images, pixels, plan.labels, request.format, meta
            )
        metrics.images.labels("/generate").inc(plan.size)
        return Response(body, media_type=media_type, headers=encoding.response_headers(meta))

    @app.post(
        "/generate",
        summary="Generate digits (JSON with base64 PNGs, raw .npy, or a PNG grid)",
        response_class=Response,
    )
    async def generate_post(request: Request) -> Response:
        return await generate(request, await _json_body(request, GenerateRequest, state))

    @app.get(
        "/generate",
        summary="Generate digits from query parameters (for browsers)",
        description="?seed=7&batch_size=20&digits=3&format=png; digits may be 1,2,3 or repeated.",
        response_class=Response,
    )
    async def generate_get(request: Request) -> Response:
        params = {key: request.query_params.getlist(key) for key in request.query_params}
        return await generate(request, parse_query(params, state.limits))

    @app.post(
        "/balance",
        summary="Generate the digits that balance a dataset's class counts (.npz)",
        description="An already balanced dataset gets 200 with no images (empty arrays).",
        response_class=Response,
    )
    async def balance(request: Request) -> Response:
        parsed = await _json_body(request, BalanceRequest, state)
        model = manager.require()
        plan = plan_balance(parsed, model.signature)
        pixels = await unless_disconnected(request, state.pixels(model, plan))
        payload, media_type = await run_in_threadpool(encoding.encode_balance, pixels, plan.labels)
        metrics.images.labels("/balance").inc(plan.size)
        meta = encoding.response_meta(model.name, model.version, plan.seed, plan.size)
        headers = encoding.response_headers(meta)
        headers["Content-Disposition"] = 'attachment; filename="balance.npz"'
        return Response(payload, media_type=media_type, headers=headers)

    @app.get("/models", summary="The loaded model version and its manifest")
    async def models() -> dict[str, Any]:
        model = manager.require()
        return {
            "model": model.name,
            "version": model.version,
            "alias": manager.alias,
            "loaded_at": model.loaded_at.isoformat(),
            "backend": _describe_backend(model, state.batcher),
            "limits": vars(state.limits),
            "manifest": model.manifest.model_dump(mode="json"),
        }

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: a verified, warmed-up model is loaded")
    async def readyz() -> JSONResponse:
        model = manager.current
        ready = model is not None and not state.draining
        kind = manager.last_error_kind
        body: dict[str, Any] = {
            "ready": ready,
            "version": model.version if model else None,
            "source": model.source if model else None,
            "last_error": "shutting down" if state.draining else manager.last_error,
            "error_kind": kind.name.lower() if kind and not state.draining else None,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Re-read the alias now and swap if it moved (token)")
    async def reload(request: Request) -> JSONResponse:
        _check_admin(request, state.settings)
        serving = manager.current.version if manager.current else None
        try:
            result = await asyncio.to_thread(manager.refresh, retry_refused=True)
        except Exception as exc:  # the manager logged it and shows it on /readyz
            kind = classify(exc)
            status = RELOAD_STATUS.get(kind, 503)
            return _error(status, f"{kind}: {exc}; still serving {serving}")
        return JSONResponse({"version": result.version, "changed": result.changed})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def gallery(seed: int = 0) -> HTMLResponse:
        model = manager.current
        seed = min(max(seed, 0), 2**62)
        return HTMLResponse(
            gallery_html(model.name if model else None, model.version if model else None, seed)
        )


def _describe_backend(model: LoadedModel, batcher: Batcher) -> dict[str, Any]:
    providers = getattr(model.backend, "providers", None)
    pool = {"workers": batcher.workers, "threads_per_call": getattr(model.backend, "threads", None)}
    return {"kind": type(model.backend).__name__, "providers": providers, **pool}


def _check_admin(request: Request, settings: ServeSettings) -> None:
    if settings.admin_token is None:
        raise RequestError("admin endpoints are disabled: set DCGAN_SERVE_ADMIN_TOKEN", 403)
    given = request.headers.get("authorization", "")
    expected = f"Bearer {settings.admin_token.get_secret_value()}"
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise RequestError(
            "admin token missing or wrong: send 'Authorization: Bearer <token>'", 401
        )
