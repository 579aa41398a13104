"""The HTTP API (FastAPI over ONNX Runtime): the app, its model follower and its routers.

Routes live in serving/api/routes/ (images, operations, admin); what a handler needs is
serving/api/service_state.py, given to it by serving/api/deps.py; how errors become answers is
serving/api/http_errors.py. Request bodies are read and validated by serving.core.schemas (the
same code the TorchServe handler uses), so every malformed input is a 4xx with one clear
``detail`` line; a 5xx would be a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from models.registry import ModelRegistry
from models.registry.settings import open_registry, registry_settings
from serving.api import docs_ui, openapi
from serving.api.http_errors import install_error_handlers
from serving.api.metrics import MetricsMiddleware, ServiceMetrics
from serving.api.routes import admin, images, operations, v2
from serving.api.service_state import ServiceState
from serving.api.settings import ServeSettings, serve_settings
from serving.core.batching import Batcher
from serving.core.lifecycle import (
    BackendFactory,
    LoadedModel,
    ModelManager,
    onnx_classifier_factory,
    onnx_factory,
)
from serving.core.model_set import ModelSet
from serving.core.onnx_backend import inference_pool

ROUTERS = (images.router, operations.router, admin.router, v2.router)
# Paths the metrics label by name (anything else is "other", so labels stay bounded).
ROUTES = {route.path for router in ROUTERS for route in router.routes if hasattr(route, "path")}


def create_app(
    settings: ServeSettings | None = None,
    registry: ModelRegistry | None = None,
    *,
    cache_dir: Path | None = None,
    factory: BackendFactory | None = None,
) -> FastAPI:
    """The service. Defaults: settings and registry from the environment, ONNX Runtime backend."""
    settings = settings or serve_settings()
    if registry is None or cache_dir is None:
        registry_config = registry_settings()
        registry = registry or open_registry(registry_config)
        cache_dir = cache_dir or registry_config.cache_dir.expanduser()
    metrics = ServiceMetrics()
    workers, threads = inference_pool(settings.device, settings.workers, settings.threads)
    backend_factory = factory or onnx_factory(settings.device, threads)
    classifier_factory = onnx_classifier_factory(settings.device, threads)
    warmup_sizes = tuple(sorted({1, min(settings.batch_max_images, settings.max_batch_size)}))
    managers = [
        ModelManager(
            registry if served.name == registry.model else registry.for_model(served.name),
            cache_dir,
            backend_factory,
            alias=served.alias,
            warmup_sizes=warmup_sizes,
            keep_versions=settings.cache_versions,
            classifier_factory=classifier_factory,
        )
        for served in settings.served_models(registry.model)
    ]
    models = ModelSet(managers)
    batcher = Batcher(
        workers=workers,
        max_images=settings.batch_max_images,
        wait_s=settings.batch_wait_ms / 1000,
        max_queue_images=settings.max_queue_images,
        enabled=settings.batching,
        on_batch=metrics.observe_batch,
    )
    state = ServiceState(settings, models, batcher, metrics)
    metrics.backlog.set_function(lambda: batcher.backlog)
    for manager in models:
        _report_on(metrics, manager)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        followers = [
            asyncio.create_task(_follow_alias(manager, settings.poll_interval_s))
            for manager in models
        ]
        try:
            yield
        finally:
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            await batcher.stop()

    app = FastAPI(
        title="dcgan-mnist-service",
        summary="Synthetic MNIST digits on demand from a conditional DCGAN (ONNX Runtime).",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # docs_ui serves /docs and /redoc with their assets: no CDN needed
        redoc_url=None,
    )
    docs_ui.install(app)
    app.state.service = state
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app, ROUTERS)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=ROUTES)
    openapi.install(app, state.limits)
    return app


def _report_on(metrics: ServiceMetrics, manager: ModelManager) -> None:
    """The model's own series: its version, swaps, failures by kind, and whether it is cached."""
    name = manager.registry.model

    def swapped(model: LoadedModel) -> None:
        metrics.model.labels(name).info({"version": model.version})
        metrics.model_loaded.labels(name).set(model.loaded_at.timestamp())
        metrics.reloads.labels(name, "swapped").inc()

    def failed(_: str) -> None:
        metrics.reloads.labels(name, "failed").inc()
        kind = manager.last_error_kind
        metrics.load_failures.labels(name, kind.name.lower() if kind else "unknown").inc()

    manager.on_change.append(swapped)
    manager.on_failure.append(failed)
    metrics.from_cache.labels(name).set_function(
        lambda: float(manager.current is not None and manager.current.source == "cache")
    )


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
