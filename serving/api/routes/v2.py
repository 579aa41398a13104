"""KServe V2 (Open Inference Protocol) REST endpoints beside ours, so stock clients
(``tritonclient.http``, KServe) can ask for digits: server and model metadata and health, and
``infer`` (serving/api/kserve.py: the bodies); and their part of the OpenAPI document. Errors are
``{"error": ...}`` (serving/api/http_errors.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from models.contract import GeneratorSignature, labels_for_request
from serving.api import kserve
from serving.api.deps import State, read_body, unless_disconnected
from serving.api.routes.operations import server_ready
from serving.api.service_state import ServiceState
from serving.core.decoding import validate
from serving.core.errors import (
    BodyTimeout,
    InvalidRequest,
    MalformedRequest,
    NotReady,
    TooLarge,
    UnknownModel,
)
from serving.core.generation import plan_generate
from serving.core.lifecycle import LoadedModel
from serving.core.schemas import GenerateRequest, Limits
from serving.http_status import documented_errors

router = APIRouter(prefix="/v2", tags=["KServe V2 (Open Inference Protocol)"])
SERVER_NAME, SERVER_VERSION = "dcgan-mnist-service", "0.1.0"


def _model(state: ServiceState, name: str, version: str | None) -> LoadedModel:
    """The named model's loaded version (and that version); 404 for another."""
    model = state.models.require(name)
    if version is not None and version != model.version:
        raise UnknownModel(
            f"version {version!r} of {name!r} is not loaded here (loaded: {model.version!r})"
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


@router.get("/health/ready", summary="V2 readiness: the default model is loaded, as /readyz")
async def ready(state: State) -> Response:
    """The protocol's server readiness is /readyz's rule (``server_ready``), so a second model not
    yet published does not keep the server unready forever; /v2/models/{name}/ready is each
    model's own."""
    return Response(status_code=200 if server_ready(state) else 503)


# Each route with a version has a twin without one (the loaded version), so that no route takes
# a `?version=` query parameter that the protocol does not have.
@router.get("/models/{name}", summary="V2 model metadata")
async def model_metadata(state: State, name: str) -> dict[str, Any]:
    return _metadata(_model(state, name, None))


@router.get("/models/{name}/versions/{version}", summary="V2 model metadata of a version")
async def version_metadata(state: State, name: str, version: str) -> dict[str, Any]:
    return _metadata(_model(state, name, version))


@router.get("/models/{name}/ready", summary="V2 model readiness")
async def model_ready(state: State, name: str) -> Response:
    _model(state, name, None)
    return Response(status_code=200)


@router.get("/models/{name}/versions/{version}/ready", summary="V2 model version readiness")
async def version_ready(state: State, name: str, version: str) -> Response:
    _model(state, name, version)
    return Response(status_code=200)


def _one(tensors: dict[str, np.ndarray], name: str) -> int | None:
    """The value of a [1] input (kserve checked its shape), if given."""
    value = tensors.get(name)
    return None if value is None else int(value[0])


async def _pixels(
    http: Request, state: ServiceState, model: LoadedModel, tensors: dict[str, np.ndarray]
) -> np.ndarray:
    sig: GeneratorSignature = model.signature
    labels = tensors.get("labels")
    if labels is not None and not sig.conditional:
        raise MalformedRequest("the model is unconditional: omit 'labels'")
    if ("seed" in tensors) == ("z" in tensors):
        raise MalformedRequest("give exactly one of the inputs 'seed' and 'z'")
    digits = None if labels is None else [int(d) for d in labels]
    if "seed" in tensors:
        count = _one(tensors, "count")
        batch = count if count is not None else len(digits) if digits else None
        if batch is None:
            raise MalformedRequest("with 'seed', give 'count' or 'labels' (how many images)")
        request = validate(
            GenerateRequest,
            {"seed": _one(tensors, "seed"), "batch_size": batch, "digits": digits},
            state.limits,
        )
        answer = await unless_disconnected(http, state.answer(model, plan_generate(request, sig)))
        return answer.pixels
    z = tensors["z"]  # [N, latent_dim], N within the limit (kserve checked)
    if "count" in tensors:
        raise MalformedRequest("'count' goes with 'seed'; with 'z' the images are its rows")
    n = len(z)
    if digits is not None and len(digits) != n:
        raise MalformedRequest(f"'labels' has {len(digits)} values for {n} rows of 'z'")
    try:  # the contract's labels: the 0..9 cycle when none are given, range-checked
        rows = labels_for_request(n, digits)
    except ValueError as exc:
        raise MalformedRequest(str(exc)) from None
    return await unless_disconnected(http, state.digits.pixels_for_latent(model, z, rows))


@router.post("/models/{name}/infer", summary="V2 inference: digits for a seed or latents")
async def infer(http: Request, state: State, name: str) -> Response:
    return await _infer(http, state, _model(state, name, None))


@router.post("/models/{name}/versions/{version}/infer", summary="V2 inference on a version")
async def version_infer(http: Request, state: State, name: str, version: str) -> Response:
    return await _infer(http, state, _model(state, name, version))


async def _infer(http: Request, state: ServiceState, model: LoadedModel) -> Response:
    body = await read_body(http, state)
    lengths = http.headers.getlist(kserve.HEADER_LENGTH)
    if len(lengths) > 1:
        raise MalformedRequest(f"{kserve.HEADER_LENGTH} is given {len(lengths)} times")
    header_length = lengths[0] if lengths else None
    limits, latent_dim = state.limits, model.signature.latent_dim
    request = kserve.parse_infer(body, header_length, limits, latent_dim)
    pixels = await _pixels(http, state, model, request.tensors)
    state.metrics.observe_images("/v2/infer", model.name, len(pixels), None)
    payload, headers, media_type = kserve.encode_infer(pixels, model.name, model.version, request)
    return Response(payload, media_type=media_type, headers=headers)


# -- these routes in the OpenAPI document (serving/api/openapi.py asks) ---------------------------
Served = Sequence[tuple[str, LoadedModel | None]]  # each served model's name and loaded version
JSON = "application/json"
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
# What each error means on these routes; its status is serving/http_status.py's.
ERROR_TEXT: dict[type[Exception], str] = {
    MalformedRequest: "The request is not a well-formed V2 inference request (the error names "
    "what)",
    UnknownModel: "No such model, or that version is not the one loaded here",
    BodyTimeout: "The body did not arrive within DCGAN_SERVE_BODY_TIMEOUT_S",
    TooLarge: "The body is over the byte limit",
    InvalidRequest: "A limit is passed (images per request), a value is out of range or a key is "
    "repeated",
    NotReady: "No model is loaded yet, or the server is busy",
}
LENGTH_SCHEMA = {"type": "string", "pattern": f"^[0-9]{{1,{kserve.HEADER_DIGITS}}}$"}
LENGTH_HEADER = {
    "name": kserve.HEADER_LENGTH,
    "in": "header",
    "required": False,
    "schema": LENGTH_SCHEMA,
    "description": "Binary data extension: the body is this many bytes of JSON (whose inputs "
    "give parameters.binary_data_size instead of data), then each input's tensor, "
    "little-endian, in the inputs' order. Omitted: the body is JSON.",
}
ANSWER = {
    "type": "object",
    "required": ["model_name", "model_version", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object"}},
    },
}


def document(spec: dict[str, Any], limits: Limits, served: Served) -> None:
    """Answers and ``{"error": ...}`` errors; the served models' names and loaded versions as the
    path's values; the infer body (serving/api/kserve.py) that every loaded model accepts."""
    paths = spec["paths"]
    paths["/v2"]["get"]["responses"] = _answer("Server name, version, extensions")
    paths["/v2/health/live"]["get"]["responses"] = {"200": {"description": "The process answers"}}
    paths["/v2/health/ready"]["get"]["responses"] = {
        "200": {"description": "Ready as /readyz says: the default model is loaded"},
        "503": {"description": "The default model is not loaded yet, or shutting down"},
    }
    loaded = [model for _, model in served if model is not None]
    dims = {model.signature.latent_dim for model in loaded}
    components = kserve.body_schema(
        limits,
        dims.pop() if len(dims) == 1 else None,  # latents of several sizes: none fits every model
        bool(loaded) and all(model.signature.conditional for model in loaded),
    )
    spec.setdefault("components", {}).setdefault("schemas", {}).update(components)
    body = {"$ref": f"#/components/schemas/{kserve.INFER_REQUEST}"}
    components[kserve.INFER_REQUEST]["description"] = (
        "seed (+ count and/or labels), or z (+ labels), each input once, in any order, data flat "
        "in row-major order: with a seed, the images of POST /generate with that seed, "
        f"batch_size count and digits labels. Spelled out here: up to {kserve.SPELLED_LABELS} "
        f"labels and {kserve.SPELLED_ROWS} rows of z; the server takes up to "
        f"{limits.max_batch_size}. The binary data extension: see {kserve.HEADER_LENGTH}."
    )
    values = {"name": [name for name, _ in served], "version": sorted({m.version for m in loaded})}
    for path in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        metadata, ready = paths[path]["get"], paths[f"{path}/ready"]["get"]
        metadata["responses"] = {
            **_answer("Name, versions, inputs, outputs"),
            **_errors(UnknownModel, NotReady),
        }
        ready["responses"] = {
            "200": {"description": "Loaded and ready"},
            **_errors(UnknownModel, NotReady),
        }
        infer = paths[f"{path}/infer"]["post"]
        infer["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
        infer["parameters"].append(LENGTH_HEADER)
        binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        length = {"required": False, "schema": LENGTH_SCHEMA, "description": "Binary answers"}
        infer["responses"] = {
            "200": {
                "description": "images UINT8 [N, 28, 28]: JSON data, or binary after a JSON header",
                "content": {JSON: {"schema": ANSWER}, **binary},
                "headers": {kserve.HEADER_LENGTH: length},
            },
            **_errors(*ERROR_TEXT),
        }
        for operation in (metadata, ready, infer):
            for parameter in operation["parameters"]:
                if parameter["in"] == "path" and values[parameter["name"]]:
                    parameter["schema"] = {"type": "string", "enum": values[parameter["name"]]}


def _answer(description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {JSON: {"schema": {"type": "object"}}}}}


def _errors(*errors: type[Exception]) -> dict[str, Any]:
    return documented_errors(errors, ERROR_TEXT, ERROR)
