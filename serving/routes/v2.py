"""KServe V2 (Open Inference Protocol) REST endpoints beside ours, so stock clients
(``tritonclient.http``, KServe) can ask for digits: server and model metadata and health, and
``infer`` (serving/kserve.py: the bodies). Errors are ``{"error": ...}`` (serving/http_errors.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from models.contract import GeneratorSignature, labels_for_request
from serving import kserve
from serving.errors import RequestError
from serving.generation import plan_generate
from serving.lifecycle import LoadedModel
from serving.schemas import GenerateRequest, validate
from serving.state import ServiceState, State, read_body, unless_disconnected

router = APIRouter(prefix="/v2", tags=["KServe V2 (Open Inference Protocol)"])
SERVER_NAME, SERVER_VERSION = "dcgan-mnist-service", "0.1.0"


def _model(state: ServiceState, name: str, version: str | None) -> LoadedModel:
    """The named model's loaded version (and that version); 404 for another."""
    model = state.models.require(name)
    if version is not None and version != model.version:
        raise RequestError(
            f"version {version!r} of {name!r} is not loaded here (loaded: {model.version!r})", 404
        )
    return model


def _metadata(model: LoadedModel) -> dict[str, Any]:
    sig = model.signature
    inputs = [
        {"name": "seed", "datatype": "INT64", "shape": [1]},
        {"name": "count", "datatype": "INT64", "shape": [1]},
        {"name": "z", "datatype": "FP32", "shape": [-1, sig.latent_dim]},
    ]
    if sig.conditional:
        inputs.append({"name": "labels", "datatype": "INT64", "shape": [-1]})
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "onnxruntime_onnx",
        "inputs": inputs,
        "outputs": [
            {
                "name": kserve.OUTPUT,
                "datatype": "UINT8",
                "shape": [-1, sig.image_size, sig.image_size],
            }
        ],
    }


@router.get("", summary="V2 server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": [kserve.BINARY_EXTENSION]}


@router.get("/health/live", summary="V2 liveness")
async def live() -> Response:
    return Response(status_code=200)


@router.get("/health/ready", summary="V2 readiness: every served model is loaded")
async def ready(state: State) -> Response:
    """The protocol's server readiness: every served model is loaded."""
    loaded = all(m.current is not None for m in state.models) and not state.draining
    return Response(status_code=200 if loaded else 503)


@router.get("/models/{name}", summary="V2 model metadata")
@router.get("/models/{name}/versions/{version}", summary="V2 model metadata of a version")
async def model_metadata(state: State, name: str, version: str | None = None) -> dict[str, Any]:
    return _metadata(_model(state, name, version))


@router.get("/models/{name}/ready", summary="V2 model readiness")
@router.get("/models/{name}/versions/{version}/ready", summary="V2 model version readiness")
async def model_ready(state: State, name: str, version: str | None = None) -> Response:
    _model(state, name, version)
    return Response(status_code=200)


def _count(tensors: dict[str, np.ndarray], name: str) -> int | None:
    value = tensors.get(name)
    if value is None:
        return None
    if value.size != 1:
        raise RequestError(f"input {name!r} holds one value, not {value.size}", 400)
    return int(value.ravel()[0])


async def _pixels(
    http: Request, state: ServiceState, model: LoadedModel, tensors: dict[str, np.ndarray]
) -> np.ndarray:
    sig: GeneratorSignature = model.signature
    labels = tensors.get("labels")
    if labels is not None and not sig.conditional:
        raise RequestError("the model is unconditional: omit 'labels'", 400)
    if ("seed" in tensors) == ("z" in tensors):
        raise RequestError("give exactly one of the inputs 'seed' and 'z'", 400)
    if "seed" in tensors:
        count = _count(tensors, "count")
        digits = None if labels is None else [int(d) for d in labels.ravel()]
        batch = count if count is not None else len(digits) if digits else None
        if batch is None:
            raise RequestError("with 'seed', give 'count' or 'labels' (how many images)", 400)
        request = validate(
            GenerateRequest,
            {"seed": _count(tensors, "seed"), "batch_size": batch, "digits": digits},
            state.limits,
        )
        pixels, _ = await unless_disconnected(
            http, state.pixels(model, plan_generate(request, sig))
        )
        return pixels
    z = tensors["z"]
    if "count" in tensors:
        raise RequestError("'count' goes with 'seed'; with 'z' the images are its rows", 400)
    if z.ndim != 2 or z.shape[1] != sig.latent_dim:
        raise RequestError(f"input 'z' is [N, {sig.latent_dim}], not {list(z.shape)}", 400)
    n = len(z)
    if n > state.limits.max_batch_size:
        raise RequestError(f"{n} images is above the limit of {state.limits.max_batch_size}", 422)
    if labels is not None and labels.size != n:
        raise RequestError(f"'labels' has {labels.size} values for {n} rows of 'z'", 400)
    try:  # the contract's labels: the 0..9 cycle when none are given, range-checked
        digits = None if labels is None else [int(d) for d in labels.ravel()]
        rows = labels_for_request(n, digits)
    except ValueError as exc:
        raise RequestError(str(exc), 400) from None
    return await unless_disconnected(http, state.pixels_for_latent(model, z, rows))


@router.post("/models/{name}/infer", summary="V2 inference: digits for a seed or latents")
@router.post("/models/{name}/versions/{version}/infer", summary="V2 inference on a version")
async def infer(http: Request, state: State, name: str, version: str | None = None) -> Response:
    model = _model(state, name, version)
    body = await read_body(http, state)
    request = kserve.parse_infer(body, http.headers.get(kserve.HEADER_LENGTH))
    pixels = await _pixels(http, state, model, request.tensors)
    state.metrics.observe_images("/v2/infer", model.name, len(pixels), None)
    payload, headers, media_type = kserve.encode_infer(pixels, model.name, model.version, request)
    return Response(payload, media_type=media_type, headers=headers)
