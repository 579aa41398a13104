"""The KServe V2 (Open Inference Protocol) request and response bodies of ``/v2/.../infer``, with
the binary tensor data extension: parsing into what ``/generate`` takes, and encoding its pixels.

Inputs (any order, each at most once): ``seed`` (INT64/UINT64 [1]) or ``z`` (FP32 [N,
latent_dim]), exactly one; ``labels`` (INT32/INT64 [N], optional: the 0..9 cycle) and ``count``
(INT32/INT64 [1], with a seed: the number of images, default len(labels)). With a seed the images
are exactly those of ``POST /generate {"seed", "batch_size": count, "digits": labels}``. The
output is ``images`` (UINT8 [N, H, W]).
https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol

The JSON (the whole body, or the header the binary extension puts before its tensors) is read by
``serving.core.decoding.strict_json``, the rules of every route. Every size is then checked in
Python integers against the limits (rows, elements, bytes) before numpy sees a shape; parameters
are the binary extension's, typed, and anything else is refused: every malformed request is a
RequestError.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.contract import MAX_SEED, NUM_CLASSES
from serving.core.decoding import strict_json
from serving.core.errors import InvalidRequest, MalformedRequest
from serving.core.schemas import Limits, short

HEADER_LENGTH = "Inference-Header-Content-Length"
HEADER_DIGITS = 20  # ASCII digits: int() would also take " 7", "1_000" and other scripts' digits
OUTPUT = "images"
BINARY_EXTENSION = "binary_tensor_data"
MAX_ID_LENGTH = 128  # the request id is echoed in the answer
# V2 datatype -> numpy dtype (little-endian, as the binary extension sends tensors).
DATATYPES = {"INT32": "<i4", "INT64": "<i8", "UINT64": "<u8", "FP32": "<f4"}
FP32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Input:
    datatypes: tuple[str, ...]
    rank: int  # seed, count and labels are [n]; z is [n, latent_dim]


INPUTS = {
    "seed": Input(("INT64", "UINT64"), 1),
    "count": Input(("INT32", "INT64"), 1),
    "labels": Input(("INT32", "INT64"), 1),
    "z": Input(("FP32",), 2),
}
ONE_VALUE = ("seed", "count")  # shape [1]
# The keys each object may hold, and the parameters (the binary data extension's) with their type.
REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
TENSOR_KEYS = ("name", "datatype", "shape", "parameters", "data")
OUTPUT_KEYS = ("name", "parameters")
REQUEST_PARAMETERS = {"binary_data_output": bool}
INPUT_PARAMETERS = {"binary_data_size": int}
OUTPUT_PARAMETERS = {"binary_data": bool}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    tensors: dict[str, np.ndarray]
    binary_output: bool  # the caller asked for the images as binary data


def _error(message: str) -> MalformedRequest:
    """The V2 request's shape is broken (answered 400, as KServe's servers do)."""
    return MalformedRequest(message)


def parse_infer(
    body: bytes, header_length: str | None, limits: Limits, latent_dim: int
) -> InferRequest:
    """The request, from a JSON body or a JSON header plus binary tensors; at most
    ``limits.max_batch_size`` rows of ``latent_dim`` latents."""
    header, binary = split_body(body, header_length)
    what = "request body" if header_length is None else "inference header"
    request = strict_json(header, limits, what)
    _keys(request, REQUEST_KEYS, "the request")
    inputs = request.get("inputs")
    if not isinstance(inputs, list):
        raise _error("the request needs an 'inputs' list")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for spec in inputs:
        name, array, offset = _tensor(spec, binary, offset, limits.max_batch_size, latent_dim)
        if name in tensors:
            raise _error(f"input {name!r} is given twice")
        tensors[name] = array
    if offset != len(binary):
        raise _error(f"{len(binary) - offset} bytes of binary data belong to no input")
    return InferRequest(_request_id(request), tensors, _binary_output(request))


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it (none without ``header_length``)."""
    if header_length is None:
        return body, memoryview(b"")
    ascii_digits = re.fullmatch(f"[0-9]{{1,{HEADER_DIGITS}}}", header_length)
    if ascii_digits is None or int(header_length) > len(body):
        raise _error(
            f"{HEADER_LENGTH} must be the JSON header's length in ASCII digits, at most the "
            f"body's {len(body)} bytes, not {short(header_length)}"
        )
    return body[: int(header_length)], memoryview(body)[int(header_length) :]


def _keys(value: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _error(f"{where} must be a JSON object")
    unknown = [key for key in value if key not in allowed]
    if unknown:
        raise _error(f"{where} holds {short(unknown[0])}: it may hold {', '.join(allowed)}")
    return value


def _parameters(value: Any, allowed: Mapping[str, type], where: str) -> dict[str, Any]:
    """The binary extension's parameters, typed; any other is refused (it asks for a feature,
    such as a timeout or a classification, that this server would not honour)."""
    if not isinstance(value, dict):
        raise _error(f"{where}: 'parameters' must be an object, not {short(value)}")
    for key, item in value.items():
        kind = allowed.get(key)
        if kind is None:
            supported = ", ".join(allowed)
            raise _error(f"{where}: parameter {short(key)} is not supported (only {supported})")
        fits = isinstance(item, bool) if kind is bool else _whole(item) and item >= 0
        if not fits:
            wanted = "true or false" if kind is bool else "a whole number >= 0"
            raise _error(f"{where}: parameter {key!r} is {short(item)}, not {wanted}")
    return value


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor(
    spec: Any, binary: memoryview, offset: int, max_rows: int, latent_dim: int
) -> tuple[str, np.ndarray, int]:
    """One input: its name, array and the offset after its binary data (if any)."""
    _keys(spec, TENSOR_KEYS, "each input")
    name = spec.get("name")
    if not isinstance(name, str) or name not in INPUTS:
        raise _error(f"unknown input {short(name)} (inputs: {', '.join(INPUTS)})")
    datatype = spec.get("datatype")
    if datatype not in INPUTS[name].datatypes:
        allowed = " or ".join(INPUTS[name].datatypes)
        raise _error(f"input {name!r} is {allowed}, not {short(datatype)}")
    shape = _shape(name, spec.get("shape"), max_rows, latent_dim)
    count, dtype = math.prod(shape), np.dtype(DATATYPES[datatype])
    parameters = _parameters(spec.get("parameters", {}), INPUT_PARAMETERS, f"input {name!r}")
    length = parameters.get("binary_data_size")
    if length is None:
        values = _values(name, datatype, spec.get("data"), shape)
        return name, np.array(values, dtype=dtype).reshape(shape), offset
    if "data" in spec:
        raise _error(f"input {name!r}: give data or binary_data_size, not both")
    if length != count * dtype.itemsize:
        raise _error(f"input {name!r}: binary_data_size must be {count * dtype.itemsize}")
    if offset + length > len(binary):
        raise _error(f"input {name!r}: the body ends before its {length} bytes of data")
    array = np.frombuffer(binary, dtype, count, offset).reshape(shape).copy()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _error(f"input {name!r}: every value must be finite")
    return name, array, offset + length


def _shape(name: str, shape: Any, max_rows: int, latent_dim: int) -> list[int]:
    """The input's shape, checked in Python integers (no product can wrap) before any array."""
    rank = INPUTS[name].rank
    wanted = "[1]" if name in ONE_VALUE else "[N]" if rank == 1 else f"[N, {latent_dim}]"
    if (
        not (isinstance(shape, list) and len(shape) == rank and all(_whole(d) for d in shape))
        or (name in ONE_VALUE and shape != [1])
        or (name == "z" and shape[1] != latent_dim)
    ):
        raise _error(f"input {name!r} is {wanted}, not {short(shape)}")
    if name not in ONE_VALUE and not 1 <= shape[0] <= max_rows:
        raise InvalidRequest(
            f"input {name!r} has {short(shape[0])} rows: give 1..{max_rows} (this server's limit "
            "of images per request)"
        )
    return shape


def _values(name: str, datatype: str, data: Any, shape: list[int]) -> list[int] | list[float]:
    """``data``: a flat list in row-major order (or, for z, a list of rows), of numbers that fit
    the datatype."""
    count = math.prod(shape)
    if not isinstance(data, list):
        raise _error(f"input {name!r} needs data (a list of {count} values) or binary_data_size")
    flat = data
    if len(shape) == 2 and len(data) == shape[0] and all(isinstance(r, list) for r in data):
        flat = [value for row in data if len(row) == shape[1] for value in row]
    if len(flat) != count or any(isinstance(value, list) for value in flat):
        raise _error(
            f"input {name!r}: {len(data)} values for shape {shape}: give {count}, row-major"
        )
    if datatype == "FP32":
        if not all(_number(v) and abs(v) <= FP32_MAX for v in flat):
            raise _error(f"input {name!r}: every value must be a finite FP32 number")
        return [float(v) for v in flat]
    info = np.iinfo(DATATYPES[datatype])
    low, high = int(info.min), int(info.max)
    if not all(_whole(v) and low <= v <= high for v in flat):
        raise _error(f"input {name!r}: every value must be an integer in {low}..{high}")
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _request_id(request: dict[str, Any]) -> str | None:
    if "id" not in request:
        return None
    value = request["id"]
    if not (isinstance(value, str) and len(value) <= MAX_ID_LENGTH):
        raise _error(f"'id' must be a string of at most {MAX_ID_LENGTH} characters")
    return value


def _binary_output(request: dict[str, Any]) -> bool:
    """Whether the images go back as binary data: the request's ``binary_data_output``, unless
    the output says otherwise."""
    parameters = _parameters(request.get("parameters", {}), REQUEST_PARAMETERS, "the request")
    binary = parameters.get("binary_data_output", False)
    outputs = request.get("outputs", [])
    if not isinstance(outputs, list) or len(outputs) > 1:
        raise _error(f"'outputs' is a list of at most one output, {OUTPUT!r}")
    for output in outputs:
        _keys(output, OUTPUT_KEYS, "an output")
        if output.get("name") != OUTPUT:
            raise _error(f"the only output is {OUTPUT!r}, not {short(output.get('name'))}")
        chosen = _parameters(output.get("parameters", {}), OUTPUT_PARAMETERS, "the output")
        binary = chosen.get("binary_data", binary)
    return bool(binary)


def encode_infer(
    pixels: np.ndarray, model: str, version: str, request: InferRequest
) -> tuple[bytes, dict[str, str], str]:
    """The response body, its extra headers and its media type."""
    output: dict[str, Any] = {"name": OUTPUT, "datatype": "UINT8", "shape": list(pixels.shape)}
    answer: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": [output]}
    if request.id is not None:
        answer["id"] = request.id
    if not request.binary_output:
        output["data"] = pixels.ravel().tolist()
        return json.dumps(answer).encode(), {}, "application/json"
    raw = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(answer).encode()
    return header + raw, {HEADER_LENGTH: str(len(header))}, "application/octet-stream"


# -- the infer body's JSON Schema (the OpenAPI document's, serving/api/openapi.py) -------------
LONGEST_NUMBER = 42  # JSON bytes of one FP32 value at most: a 39-digit integer and ", "
REST_OF_BODY = 2560  # JSON bytes of everything else at most: keys, the id (escaped), parameters
# JSON Schema cannot tie a shape to its data's length, so each length is a branch of its own: the
# document spells out this many (a schema, and a fuzzer's work, that grow with max_batch_size
# would be slow to read and to test); longer inputs are accepted up to the limit all the same.
SPELLED_LABELS = NUM_CLASSES
SPELLED_ROWS = 4
INFER_REQUEST = "KServeV2InferRequest"  # the body's component; its inputs' are KServeV2<Name>
DIGIT = {"type": "integer", "minimum": 0, "maximum": NUM_CLASSES - 1}
FP32 = {"type": "number", "minimum": -FP32_MAX, "maximum": FP32_MAX}


def body_schema(limits: Limits, latent_dim: int | None, conditional: bool) -> dict[str, Any]:
    """The OpenAPI components that describe an infer body sent as JSON (``INFER_REQUEST`` is the
    body): what ``parse_infer`` and the route accept from a model with this signature
    (``latent_dim`` None: no latents), within the limits, with labels and latent rows up to
    ``SPELLED_LABELS`` and ``SPELLED_ROWS`` (and what fits the body limit at the longest numbers):
    every body it describes is accepted, and every other is refused but for those longer ones."""
    seed = _tensor_schema("seed", {"const": [1]}, _data(1, _integer(0, MAX_SEED)))
    count = _tensor_schema("count", {"const": [1]}, _data(1, _integer(1, limits.max_batch_size)))
    labels = _tensor_schema("labels", {"type": "array"}, {"type": "array", "items": DIGIT})
    rows = range(1, _fitting(limits, 3, SPELLED_LABELS) + 1)
    labels["anyOf"] = [{"properties": {"shape": {"const": [n]}, "data": _data(n)}} for n in rows]
    ref = {name: {"$ref": f"#/components/schemas/KServeV2{name.title()}"} for name in INPUTS}
    forms = [[ref["seed"], ref["count"]]]
    if conditional:
        forms += [[ref["seed"], ref["labels"]], [ref["seed"], ref["count"], ref["labels"]]]
    if latent_dim is not None:
        for n in range(1, _fitting(limits, latent_dim * LONGEST_NUMBER + 3, SPELLED_ROWS) + 1):
            z = _tensor_schema("z", {"const": [n, latent_dim]}, _data(n * latent_dim, FP32))
            exact = _tensor_schema("labels", {"const": [n]}, _data(n, DIGIT))
            forms += [[z], [z, exact]] if conditional else [[z]]
    orders = [list(order) for form in forms for order in itertools.permutations(form)]
    inputs = [
        {"type": "array", "prefixItems": order, "items": False, "minItems": len(order)}
        for order in orders
    ]
    output = _object(
        {"name": {"const": OUTPUT}, "parameters": _parameters_schema(OUTPUT_PARAMETERS)}, ["name"]
    )
    body = _object(
        {
            "id": {"type": "string", "maxLength": MAX_ID_LENGTH},
            "parameters": _parameters_schema(REQUEST_PARAMETERS),
            "inputs": {"anyOf": inputs},
            "outputs": {"type": "array", "items": output, "maxItems": 1},
        },
        ["inputs"],
    )
    tensors = {"seed": seed, "count": count, "labels": labels}
    return {
        INFER_REQUEST: body,
        **{f"KServeV2{name.title()}": schema for name, schema in tensors.items()},
    }


def _fitting(limits: Limits, row_bytes: int, spelled: int) -> int:
    """Rows (up to the limit) whose longest JSON fits in a body beside everything else."""
    fit = (limits.max_body_bytes - REST_OF_BODY) // row_bytes
    return max(0, min(limits.max_batch_size, spelled, fit))


def _integer(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _data(count: int, items: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "minItems": count, "maxItems": count}
    return schema if items is None else {**schema, "items": items}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _tensor_schema(name: str, shape: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    parameters = {**_parameters_schema({}), "description": "binary_data_size: binary data only"}
    properties = {
        "name": {"const": name},
        "datatype": {"enum": list(INPUTS[name].datatypes)},
        "shape": shape,
        "data": data,
        "parameters": parameters,
    }
    return _object(properties, ["name", "datatype", "shape", "data"])


def _parameters_schema(allowed: Mapping[str, type]) -> dict[str, Any]:
    kinds = {bool: {"type": "boolean"}, int: {"type": "integer", "minimum": 0}}
    return _object({key: kinds[kind] for key, kind in allowed.items()}, [])
