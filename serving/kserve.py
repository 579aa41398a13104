"""The KServe V2 (Open Inference Protocol) request and response bodies of ``/v2/.../infer``, with
the binary tensor data extension: parsing into what ``/generate`` takes, and encoding its pixels.

Inputs (any order): ``seed`` (INT64/UINT64 [1]) or ``z`` (FP32 [N, latent_dim]), exactly one;
``labels`` (INT32/INT64 [N], optional: the 0..9 cycle) and ``count`` (INT32/INT64 [1], with a
seed: the number of images, default len(labels)). With a seed the images are exactly those of
``POST /generate {"seed", "batch_size": count, "digits": labels}``. The output is ``images``
(UINT8 [N, H, W]). https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import RequestError

HEADER_LENGTH = "Inference-Header-Content-Length"
OUTPUT = "images"
BINARY_EXTENSION = "binary_tensor_data"
# V2 datatype -> numpy dtype (little-endian, as the binary extension sends tensors).
DATATYPES = {"INT32": "<i4", "INT64": "<i8", "UINT64": "<u8", "FP32": "<f4", "UINT8": "u1"}
ALLOWED = {
    "seed": {"INT64", "UINT64"},
    "count": {"INT32", "INT64"},
    "labels": {"INT32", "INT64"},
    "z": {"FP32"},
}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    tensors: dict[str, np.ndarray]
    binary_output: bool  # the caller asked for the images as binary data


def _error(message: str) -> RequestError:
    return RequestError(message, 400)


def _tensor(spec: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """One input: its name, array and the offset after its binary data (if any)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise _error("each input needs a name, shape, datatype and data")
    name = spec["name"]
    if name not in ALLOWED:
        raise _error(f"unknown input {name!r} (inputs: {', '.join(ALLOWED)})")
    datatype, shape = spec.get("datatype"), spec.get("shape")
    if datatype not in ALLOWED[name]:
        raise _error(f"input {name!r} is {' or '.join(sorted(ALLOWED[name]))}, not {datatype!r}")
    if (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or len(shape) > 2
    ):
        raise _error(f"input {name!r}: shape must be a list of at most 2 sizes >= 0")
    dtype = np.dtype(DATATYPES[datatype])
    size = int(np.prod(shape, dtype=np.int64))
    if size > 1 << 24:
        raise _error(f"input {name!r}: {size} elements is too many")
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _error(f"input {name!r}: parameters must be an object")
    length = parameters.get("binary_data_size")
    if length is not None:
        if not isinstance(length, int) or length != size * dtype.itemsize:
            raise _error(f"input {name!r}: binary_data_size must be {size * dtype.itemsize}")
        if offset + length > len(binary):
            raise _error(f"input {name!r}: the body ends before its {length} bytes of data")
        array = np.frombuffer(binary[offset : offset + length], dtype=dtype).copy()
        return name, _finite(name, array.reshape(shape)), offset + length
    data = spec.get("data")
    if not isinstance(data, list):
        raise _error(f"input {name!r} needs data (a flat list) or binary_data_size")
    flat = np.asarray(data, dtype=object).ravel() if data else np.zeros(0, dtype=object)
    if flat.size != size:
        raise _error(f"input {name!r}: {flat.size} values for shape {shape}")
    kinds: tuple[type, ...] = (int, float) if datatype == "FP32" else (int,)
    if any(isinstance(v, bool) or not isinstance(v, kinds) for v in flat):
        raise _error(
            f"input {name!r}: every value must be {'a number' if float in kinds else 'an integer'}"
        )
    try:
        array = np.asarray(flat.tolist(), dtype=dtype)
    except OverflowError:
        raise _error(f"input {name!r}: a value is out of range for {datatype}") from None
    return name, _finite(name, array.reshape(shape)), offset


def _finite(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _error(f"input {name!r}: every value must be finite")
    return array


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """The request, from a JSON body or a JSON header plus binary tensors."""
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise _error(f"{HEADER_LENGTH} must be the length of the JSON header within the body")
        header, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    try:
        request = json.loads(header)
    except (ValueError, UnicodeDecodeError):
        raise _error("the request header is not JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise _error("the request needs an 'inputs' list")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for spec in request["inputs"]:
        name, array, offset = _tensor(spec, binary, offset)
        if name in tensors:
            raise _error(f"input {name!r} is given twice")
        tensors[name] = array
    if offset != len(binary):
        raise _error(f"{len(binary) - offset} bytes of binary data belong to no input")
    return InferRequest(_request_id(request), tensors, _binary_output(request))


def _request_id(request: dict[str, Any]) -> str | None:
    value = request.get("id")
    if value is not None and not isinstance(value, str):
        raise _error("'id' must be a string")
    return value


def _binary_output(request: dict[str, Any]) -> bool:
    parameters = request.get("parameters") or {}
    outputs = request.get("outputs")
    if not isinstance(parameters, dict) or not (outputs is None or isinstance(outputs, list)):
        raise _error("'parameters' must be an object and 'outputs' a list")
    binary = parameters.get("binary_data_output") is True
    for output in outputs or []:
        if not isinstance(output, dict) or output.get("name") != OUTPUT:
            raise _error(f"the only output is {OUTPUT!r}")
        binary = (output.get("parameters") or {}).get("binary_data", binary) is True
    return binary


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
