"""The service's OpenAPI document: every parameter, body and status each route can answer.

The request bodies and the GET query are parsed by serving.core.schemas and serving.api.kserve
(our limits and messages), not by FastAPI, so FastAPI cannot see them; this module writes them
into the document, with the server's own limits as the bounds, pydantic's ``$ref``s inlined (no
dangling ``#/$defs``), the error answers (``{"detail": "..."}``; ``{"error": "..."}`` on the
KServe V2 routes) and the admin route's bearer auth. The KServe V2 operations name the served
models, and their bodies follow the loaded models' signatures, so the document is built again
when a loaded version changes. The fuzz test (tests/serving/test_fuzz.py) holds the server to
this document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from models.contract import MAX_SEED, NUM_CLASSES
from models.registry.names import ID
from serving.api.routes import v2
from serving.core.lifecycle import FailureKind
from serving.core.schemas import (
    MAX_CANDIDATES_CEILING,
    MAX_CANDIDATES_HELP,
    MODEL_HELP,
    QUERY_FRACTION,
    BalanceRequest,
    GenerateRequest,
    Limits,
    OutputFormat,
)

JSON = "application/json"
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string"}},
}
ERRORS = {
    400: "The body is not JSON, is not UTF-8, holds NaN/Infinity or nests too deep",
    401: "The admin token is missing or wrong",
    404: "No served model has that name (GET /models lists them)",
    403: "Admin endpoints are disabled (no DCGAN_SERVE_ADMIN_TOKEN)",
    408: "The body did not arrive within DCGAN_SERVE_BODY_TIMEOUT_S",
    409: "Admin reload: the version was refused (checksum, manifest, load or warm-up), or the "
    "alias names no version, and the old one keeps serving. Images: min_confidence was asked of "
    "a version published without its evaluation classifier",
    413: "The body is over the byte limit, or the request can never fit the queue (a filtered "
    "one: images x max_candidates; X-Max-Filtered-Images then names the most that fit)",
    415: "A body not sent as Content-Type: application/json",
    422: "A field is wrong (the detail names it), a key is repeated, or a limit is passed",
    503: "No model is loaded yet, or the server is busy: retry after Retry-After seconds",
}
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
GENERATED_JSON = {
    "type": "object",
    "required": ["model", "version", "seed", "batch_size", "labels", "images"],
    "properties": {
        "model": {"type": "string"},
        "version": {"type": "string"},
        "seed": {"type": "integer"},
        "batch_size": {"type": "integer"},
        "labels": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}},
        "images": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
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
    post_generate["responses"] = _generated(400, 404, 408, 409, 413, 415, 422, 503)
    get_generate["parameters"] = query_parameters(limits)
    get_generate["responses"] = _generated(404, 409, 413, 422, 503)

    balance = paths["/balance"]["post"]
    balance["requestBody"] = _body(balance_body(limits), required=True)
    balance["responses"] = {
        "200": {
            **_ok({"application/x-npz": {"schema": BINARY}}, "images uint8 (N, 28, 28), labels"),
            "headers": ANSWER_HEADERS,
        },
        **_errors(400, 404, 408, 409, 413, 415, 422, 503),
    }
    public_model = {
        "type": "object",
        "required": ["model", "alias", "ready", "version", "signature", "metrics"],
        "properties": {
            "model": {"type": "string"},
            "alias": {"type": "string"},
            "ready": {"type": "boolean", "description": "A verified version is loaded"},
            "version": {"type": ["string", "null"]},
            "signature": {
                "type": ["object", "null"],
                "description": "The generator's input contract",
            },
            "metrics": {"type": ["object", "null"], "description": "The version's evaluation"},
        },
    }
    served_models = {
        "type": "object",
        "required": ["default", "models"],
        "properties": {
            "default": {"type": "string", "description": "Answers requests that name no model"},
            "models": {"type": "array", "items": public_model, "minItems": 1},
        },
    }
    paths["/models"]["get"]["responses"] = {
        "200": _ok({JSON: {"schema": served_models}}, "Each served model, the default first"),
    }
    paths["/models/{name}"]["get"]["responses"] = {
        "200": _ok({JSON: {"schema": public_model}}, "The model, its version, contract, metrics"),
        **_errors(404),
    }
    paths["/admin/model"]["get"]["responses"] = {
        "200": _ok({JSON: {"schema": {"type": "object"}}}, "Manifest, backend, limits, source"),
        **_errors(401, 403, 404, 503),
    }
    paths["/healthz"]["get"]["responses"] = {
        "200": _ok({JSON: {"schema": {"type": "object"}}}, "The process answers")
    }
    ready_properties: dict[str, Any] = {
        "ready": {"type": "boolean"},
        "version": {"type": ["string", "null"]},
        "source": {
            "enum": ["registry", "cache", None],
            "description": "cache: the registry was unreachable at start; the alias's last "
            "version is served from the local cache (checksums verified) until it answers",
        },
        "last_error": {"type": ["string", "null"]},
        "error_kind": {
            "enum": [kind.name.lower() for kind in FailureKind] + [None],
            "description": "What the last failure was; only 'refused' is not retried",
        },
    }
    ready = {
        "type": "object",
        "required": list(ready_properties),
        "properties": ready_properties,
    }
    ready_all = {
        "type": "object",
        "required": [*ready_properties, "models"],
        "properties": {
            **ready_properties,
            "models": {
                "type": "object",
                "additionalProperties": ready,
                "description": "Each served model's own state, by name",
            },
        },
    }
    paths["/readyz"]["get"]["responses"] = {
        "200": _ok({JSON: {"schema": ready_all}}, "The default model is verified and loaded"),
        "503": _ok({JSON: {"schema": ready_all}}, "No default model loaded yet, or shutting down"),
    }
    paths["/metrics"]["get"]["responses"] = {
        "200": _ok({"text/plain": {"schema": {"type": "string"}}}, "Prometheus text format")
    }
    v2.document(spec, limits, served)
    reload = paths["/admin/reload"]["post"]  # its bearer security is FastAPI's (routes/admin.py)
    reloaded = {"type": "object", "description": "Each reloaded model's version and change"}
    reload["responses"] = {
        "200": _ok(
            {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["version", "changed", "models"],
                        "properties": {
                            "version": {"type": "string"},
                            "changed": {"type": "boolean"},
                            "models": reloaded,
                        },
                    }
                }
            },
            "The aliases were re-read; version and changed are the first model's",
        ),
        **_errors(401, 403, 404, 409),
        "503": _error_response(
            "Loading failed for a reason polling retries (registry unreachable, disk full, "
            "permission denied, out of memory, timeout); the detail names it and the old "
            "version keeps serving"
        ),
    }
    for status in ("409", "503"):  # a failure's answer still shows what the other models did
        failed = {**ERROR, "properties": {**ERROR["properties"], "models": reloaded}}
        reload["responses"][status]["content"][JSON]["schema"] = failed


def generate_body(limits: Limits) -> dict[str, Any]:
    schema = _inline(GenerateRequest.model_json_schema())
    schema["properties"]["batch_size"]["maximum"] = limits.max_batch_size
    digits = schema["properties"]["digits"]
    digits.pop("anyOf", None)
    digits["anyOf"] = [
        _digit(),
        {"type": "array", "items": _digit(), "minItems": 1, "maxItems": limits.max_batch_size},
        {"type": "null"},
    ]
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
    def parameter(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": text,
        }

    return [
        parameter("seed", {"type": "integer", "minimum": 0, "maximum": MAX_SEED}, "ASCII digits"),
        parameter(
            "batch_size",
            {"type": "integer", "minimum": 1, "maximum": limits.max_batch_size},
            "Images to generate (default 10)",
        ),
        parameter(
            "digits",
            {"type": "string", "pattern": "^[0-9](,[0-9])*$"},
            "One digit for all, or one per image separated by commas (as many as batch_size)",
        ),
        parameter("format", {"type": "string", "enum": [f.value for f in OutputFormat]}, "json"),
        parameter(
            "min_confidence",
            {"type": "string", "pattern": f"^({QUERY_FRACTION})$"},
            "Decimal 0..1, e.g. 0.95: keep only images the classifier reads as their digit with "
            "at least this probability (ONNX Runtime API only)",
        ),
        parameter(
            "max_candidates",
            {"type": "integer", "minimum": 1, "maximum": MAX_CANDIDATES_CEILING},
            MAX_CANDIDATES_HELP,
        ),
        parameter("model", {"type": "string", "pattern": f"^{ID.pattern}$"}, MODEL_HELP),
    ]


def _digit() -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": NUM_CLASSES - 1}


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


def _generated(*statuses: int) -> dict[str, Any]:
    ok = _ok(
        {
            JSON: {"schema": GENERATED_JSON},
            "application/x-npy": {"schema": BINARY},
            "image/png": {"schema": BINARY},
        },
        "Digits in the requested format (json: base64 PNGs; npy: uint8 N x 28 x 28; png: grid)",
    )
    ok["headers"] = ANSWER_HEADERS
    return {"200": ok, **_errors(*statuses)}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): _error_response(ERRORS[status], retry_after=status == 503)
        for status in statuses
    }


def _error_response(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ERROR}}}
    if retry_after:  # the service's own 503s (no model yet, queue full) always name one
        response["headers"] = RETRY_AFTER
    return response
