"""What operators and load balancers ask: the loaded model, liveness, readiness, metrics, and the
gallery page for people."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.api.answers import PublicModel, Readiness, ServedModels, ServerReadiness
from serving.api.deps import State
from serving.api.gallery import gallery_html
from serving.api.service_state import ServiceState
from serving.core.batching import Batcher
from serving.core.lifecycle import LoadedModel, ModelManager

router = APIRouter()


def _public(manager: ModelManager) -> PublicModel:
    model = manager.current
    return PublicModel(
        model=manager.registry.model,
        alias=manager.alias,
        ready=model is not None,
        version=model.version if model else None,
        signature=model.manifest.signature if model else None,
        metrics=model.manifest.metrics if model else None,
    )


@router.get("/models", summary="The served models: name, alias, version, signature and metrics")
async def models(state: State) -> dict[str, Any]:
    """Public (the Ingress exposes it): every model served, in order; ``default`` answers
    requests that name no model."""
    return ServedModels(
        default=state.models.default.registry.model,
        models=[_public(manager) for manager in state.models],
    ).model_dump(mode="json")


@router.get("/models/{name}", summary="One served model: alias, version, signature and metrics")
async def one_model(state: State, name: str) -> dict[str, Any]:
    return _public(state.models.manager(name)).model_dump(mode="json")


def model_details(state: ServiceState, name: str | None) -> dict[str, Any]:
    """Everything about a loaded model, for operators (GET /admin/model)."""
    manager = state.models.manager(name)
    model = manager.require()
    return {
        "model": model.name,
        "version": model.version,
        "alias": manager.alias,
        "source": model.source,
        "loaded_at": model.loaded_at.isoformat(),
        "backend": _describe_backend(model, state.batcher),
        "limits": vars(state.limits),
        "manifest": model.manifest.model_dump(mode="json"),
    }


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def server_ready(state: ServiceState) -> bool:
    """The server's readiness, for /readyz and KServe V2's /v2/health/ready alike: the default
    (first) model is loaded and the server is not shutting down. One model not yet published
    (another dataset's, say) does not take the others out of service; each model's own state is
    on /readyz and /v2/models/{name}/ready."""
    return state.models.default.current is not None and not state.draining


def _readiness(manager: ModelManager, draining: bool) -> Readiness:
    model = manager.current
    kind = manager.last_error_kind
    return Readiness(
        ready=model is not None and not draining,
        version=model.version if model else None,
        source=model.source if model else None,
        last_error="shutting down" if draining else manager.last_error,
        error_kind=kind.name.lower() if kind and not draining else None,
    )


@router.get("/readyz", summary="Readiness: the default model is verified, warmed up and loaded")
async def readyz(state: State) -> JSONResponse:
    """Ready as ``server_ready`` says; ``models`` tells each model's own state."""
    body = ServerReadiness(
        **_readiness(state.models.default, state.draining).model_dump(),
        models={m.registry.model: _readiness(m, state.draining) for m in state.models},
    )
    body.ready = server_ready(state)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def gallery(state: State, seed: int = 0) -> HTMLResponse:
    seed = min(max(seed, 0), 2**62)
    shown = [(manager.registry.model, manager.current) for manager in state.models]
    return HTMLResponse(
        gallery_html([(name, model.version if model else None) for name, model in shown], seed)
    )


def _describe_backend(model: LoadedModel, batcher: Batcher) -> dict[str, Any]:
    providers = getattr(model.backend, "providers", None)
    pool = {"workers": batcher.workers, "threads_per_call": getattr(model.backend, "threads", None)}
    return {"kind": type(model.backend).__name__, "providers": providers, **pool}
