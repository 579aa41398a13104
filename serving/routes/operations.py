"""What operators and load balancers ask: the loaded model, liveness, readiness, metrics, and the
gallery page for people."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.batching import Batcher
from serving.gallery import gallery_html
from serving.lifecycle import LoadedModel
from serving.state import ServiceState, State

router = APIRouter()


@router.get("/models", summary="The served model: name, version, signature and metrics")
async def models(state: State) -> dict[str, Any]:
    """Public (the Ingress exposes it): what a client needs to reproduce and judge an answer,
    nothing about the deployment (the full manifest and backend are on /admin/model)."""
    model = state.manager.require()
    return {
        "model": model.name,
        "version": model.version,
        "alias": state.manager.alias,
        "signature": model.manifest.signature,
        "metrics": model.manifest.metrics,
    }


def model_details(state: ServiceState) -> dict[str, Any]:
    """Everything about the loaded model, for operators (GET /admin/model)."""
    model = state.manager.require()
    return {
        "model": model.name,
        "version": model.version,
        "alias": state.manager.alias,
        "source": model.source,
        "loaded_at": model.loaded_at.isoformat(),
        "backend": _describe_backend(model, state.batcher),
        "limits": vars(state.limits),
        "manifest": model.manifest.model_dump(mode="json"),
    }


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: a verified, warmed-up model is loaded")
async def readyz(state: State) -> JSONResponse:
    manager = state.manager
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


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def gallery(state: State, seed: int = 0) -> HTMLResponse:
    model = state.manager.current
    seed = min(max(seed, 0), 2**62)
    return HTMLResponse(
        gallery_html(model.name if model else None, model.version if model else None, seed)
    )


def _describe_backend(model: LoadedModel, batcher: Batcher) -> dict[str, Any]:
    providers = getattr(model.backend, "providers", None)
    pool = {"workers": batcher.workers, "threads_per_call": getattr(model.backend, "threads", None)}
    return {"kind": type(model.backend).__name__, "providers": providers, **pool}
