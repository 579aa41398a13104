"""The service's OpenAPI document: every parameter, body and status each route can answer.

The request bodies and the GET query are parsed by serving.core.schemas and serving.api.kserve
(our limits and messages), not by FastAPI, so FastAPI cannot see them. Nothing here restates
them: the bodies are the request models' schemas with the server's own limits as the bounds, the
GET query is GenerateRequest's fields in their text forms (``QUERY_TEXT_FORMS``), the JSON
answers are the models the routes build them with (serving/api/answers.py, ImagesJSON), and each
error's status is serving/http_status.py's; this module adds what a reader needs (descriptions,
headers), inlines pydantic's ``$ref``s (no dangling ``#/$defs``), writes the error answers
(``{"detail": "..."}``; ``{"error": "..."}`` on the KServe V2 routes) and the admin route's
bearer auth. The KServe V2 operations name the served models, and their bodies follow the loaded
models' signatures, so the document is built again when a loaded version changes. The fuzz test
(tests/serving/test_fuzz.py) holds the server to this document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from serving.api.answers import (
    PublicModel,
    ReloadAnswer,
    ReloadFailed,
    ServedModels,
    ServerReadiness,
)
from serving.api.routes import v2
from serving.core.decoding import QUERY_TEXT_FORMS
from serving.core.encoding import ImagesJSON
from serving.core.errors import (
    AdminDisabled,
    BodyTimeout,
    InvalidRequest,
    MalformedRequest,
    NotAuthenticated,
    NotReady,
    TooLarge,
    UnknownModel,
    UnsupportedByVersion,
    UnsupportedMediaType,
)
from serving.core.schemas import BalanceRequest, GenerateRequest, Limits
from serving.http_status import documented_errors

JSON = "application/json"
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string"}},
}
# What each error a route raises means to a reader; its status is serving/http_status.py's.
ERROR_TEXT: dict[type[Exception], str] = {
    MalformedRequest: "The body is not JSON, is not UTF-8, holds NaN/Infinity or nests too deep",
    NotAuthenticated: "The admin token is missing or wrong",
    UnknownModel: "No served model has that name (GET /models lists them)",
    AdminDisabled: "Admin endpoints are disabled (no DCGAN_SERVE_ADMIN_TOKEN)",
    BodyTimeout: "The body did not arrive within DCGAN_SERVE_BODY_TIMEOUT_S",
    UnsupportedByVersion: "min_confidence was asked of a version published without its "
    "evaluation classifier",
    TooLarge: "The body is over the byte limit, or the request can never fit the queue (a "
    "filtered one: images x max_candidates; X-Max-Filtered-Images then names the most that fit)",
    UnsupportedMediaType: "A body not sent as Content-Type: application/json",
    InvalidRequest: "A field is wrong (the detail names it), a key is repeated, or a limit is "
    "passed",
    NotReady: "No model is loaded yet, or the server is busy: retry after Retry-After seconds",
}
BODY_ERRORS = (MalformedRequest, BodyTimeout, TooLarge, UnsupportedMediaType, InvalidRequest)
IMAGE_ERRORS = (UnknownModel, UnsupportedByVersion, TooLarge, InvalidRequest, NotReady)
ADMIN_ERRORS = (NotAuthenticated, AdminDisabled, UnknownModel)
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait: 1 while no model is loaded, else from the backlog.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
MODEL_HEADERS = {
    name: {"required": True, "schema": {"type": "string"}}
    for name in ("X-Model-Name", "X-Model-Version", "X-Seed", "X-Batch-Size")
}
FILTER_HEADERS = {
    "X-Filter-Min-Confidence": "The min_confidence applied (filtered answers only)",
    "X-Filter-Candidates": "Candidates generated and judged to answer the request",
    "X-Filter-Acceptance-Rate": "Images answered / candidates judged",
}
ANSWER_HEADERS = {
    **MODEL_HEADERS,
    **{
        name: {"required": False, "description": text, "schema": {"type": "string"}}
        for name, text in FILTER_HEADERS.items()
    },
}
BINARY = {"type": "string", "format": "binary"}


def install(app: FastAPI, limits: Limits) -> None:
    """Make ``app.openapi()`` return the complete document: built on first request, and again
    when the served models' loaded versions change (``app.state.service``)."""
    built: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        served = [(manager.registry.model, manager.current) for manager in app.state.service.models]
        key = [(name, model.version if model else None) for name, model in served]
        if app.openapi_schema is None or built.get("key") != key:
            spec = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            complete(spec, limits, served)
            app.openapi_schema, built["key"] = spec, key
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def complete(spec: dict[str, Any], limits: Limits, served: v2.Served) -> None:
    paths = spec["paths"]
    post_generate, get_generate = paths["/generate"]["post"], paths["/generate"]["get"]
    post_generate["requestBody"] = _body(generate_body(limits), required=False)
    post_generate["responses"] = _generated(*BODY_ERRORS, *IMAGE_ERRORS)
    get_generate["parameters"] = query_parameters(limits)
    get_generate["responses"] = _generated(*IMAGE_ERRORS)

    balance = paths["/balance"]["post"]
    balance["requestBody"] = _body(balance_body(limits), required=True)
    balance["responses"] = {
        "200": {
            **_ok({"application/x-npz": {"schema": BINARY}}, "images uint8 (N, 28, 28), labels"),
            "headers": ANSWER_HEADERS,
        },
        **_errors(*BODY_ERRORS, *IMAGE_ERRORS),
    }
    paths["/models"]["get"]["responses"] = {
        "200": _ok(_json(ServedModels), "Each served model, the default first"),
    }
    paths["/models/{name}"]["get"]["responses"] = {
        "200": _ok(_json(PublicModel), "The model, its version, contract, metrics"),
        **_errors(UnknownModel),
    }
    paths["/admin/model"]["get"]["responses"] = {
        "200": _ok({JSON: {"schema": {"type": "object"}}}, "Manifest, backend, limits, source"),
        **_errors(*ADMIN_ERRORS, NotReady),
    }
    paths["/healthz"]["get"]["responses"] = {
        "200": _ok({JSON: {"schema": {"type": "object"}}}, "The process answers")
    }
    paths["/readyz"]["get"]["responses"] = {
        "200": _ok(_json(ServerReadiness), "The default model is verified and loaded"),
        "503": _ok(_json(ServerReadiness), "No default model loaded yet, or shutting down"),
    }
    paths["/metrics"]["get"]["responses"] = {
        "200": _ok({"text/plain": {"schema": {"type": "string"}}}, "Prometheus text format")
    }
    v2.document(spec, limits, served)
    reload = paths["/admin/reload"]["post"]  # its bearer security is FastAPI's (routes/admin.py)
    reload["responses"] = {
        "200": _ok(
            _json(ReloadAnswer), "The aliases were re-read; version and changed are the first's"
        ),
        **_errors(*ADMIN_ERRORS),
        # a failure's answer still shows what the other models did
        "409": _ok(
            _json(ReloadFailed),
            "The version was refused (checksum, manifest, load or warm-up), or the alias names "
            "no version, and the old one keeps serving",
        ),
        "503": _ok(
            _json(ReloadFailed),
            "Loading failed for a reason polling retries (registry unreachable, disk full, "
            "permission denied, out of memory, timeout); the detail names it and the old "
            "version keeps serving",
        ),
    }


def generate_body(limits: Limits) -> dict[str, Any]:
    schema = _inline(GenerateRequest.model_json_schema())
    properties = schema["properties"]
    properties["batch_size"]["maximum"] = limits.max_batch_size
    digit_list = next(part for part in properties["digits"]["anyOf"] if part["type"] == "array")
    digit_list["maxItems"] = limits.max_batch_size
    schema["description"] = (
        "Image i is digit digits[i % len(digits)]; a list without batch_size asks for one image "
        "per digit; no digits: 0,1,..,9,0,... Same body (and seed), same bytes."
    )
    schema["examples"] = [{"seed": 7, "batch_size": 16, "digits": 3, "format": "npy"}]
    return schema


def balance_body(limits: Limits) -> dict[str, Any]:
    schema = _inline(BalanceRequest.model_json_schema())
    _bound_counts(schema, limits.max_class_count)
    _closed_digit_maps(schema)
    schema["description"] = (
        f"Class counts of your dataset (each at most {limits.max_class_count}); the answer holds "
        f"the images that fill every class up to the target, at most {limits.max_balance_images} "
        "in all (more: 422). Already balanced: 200 with no images."
    )
    schema["examples"] = [
        {"counts": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], "seed": 7},
        {"counts": {"3": 120}, "target": {"3": 500}},
    ]
    return schema


def query_parameters(limits: Limits) -> list[dict[str, Any]]:
    """GET /generate's query: the body's fields (their bounds and help), in their text forms."""
    parameters = []
    for name, field in generate_body(limits)["properties"].items():
        text_form = QUERY_TEXT_FORMS.get(name)
        schema = text_form["schema"] if text_form else _value_schema(field)
        description = text_form["description"] if text_form else field.get("description", "")
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": description,
            }
        )
    return parameters


def _value_schema(field: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without null (a query parameter is given or left out), title or default."""
    (value,) = [part for part in field.get("anyOf", [field]) if part.get("type") != "null"]
    dropped = ("title", "default", "description", "anyOf")
    return {key: item for key, item in value.items() if key not in dropped}


def _bound_counts(schema: dict[str, Any], maximum: int) -> None:
    """Every count (an integer with minimum 0 and no maximum) gets the server's maximum."""
    for node in _objects(schema):
        if node.get("type") == "integer" and node.get("minimum") == 0 and "maximum" not in node:
            node["maximum"] = maximum


def _closed_digit_maps(schema: dict[str, Any]) -> None:
    """{digit: count} objects take the keys "0".."9" only (pydantic leaves them open)."""
    for node in _objects(schema):
        if "patternProperties" in node:
            node["additionalProperties"] = False


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a schema, outermost first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace every ``#/$defs/...`` reference by its definition (the defs are small, acyclic)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                merged = {**defs[ref.removeprefix("#/$defs/")], **node}
                merged.pop("$ref")
                return resolve(merged)
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _body(schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _ok(content: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": content}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {JSON: {"schema": _inline(model.model_json_schema())}}


def _generated(*errors: type[Exception]) -> dict[str, Any]:
    ok = _ok(
        {
            **_json(ImagesJSON),
            "application/x-npy": {"schema": BINARY},
            "image/png": {"schema": BINARY},
        },
        "Digits in the requested format (json: base64 PNGs; npy: uint8 N x 28 x 28; png: grid)",
    )
    ok["headers"] = ANSWER_HEADERS
    return {"200": ok, **_errors(*errors)}


def _errors(*errors: type[Exception]) -> dict[str, Any]:
    """Each error's answer; the service's own 503s (no model yet, queue full) name Retry-After."""
    return documented_errors(errors, ERROR_TEXT, ERROR, {NotReady: RETRY_AFTER})
