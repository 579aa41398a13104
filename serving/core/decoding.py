"""Bytes to a validated request, under the rules every route shares (``/generate``,
``/balance``, KServe V2, TorchServe): a body's size, declared type and strict JSON, the GET
query's text forms, and one line naming every wrong field. The requests themselves are defined in
serving/core/schemas.py."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from serving.core.errors import (
    InvalidRequest,
    MalformedRequest,
    TooLarge,
    UnsupportedMediaType,
)
from serving.core.schemas import CONFIDENCE_HELP, GenerateRequest, Limits, short

M = TypeVar("M", bound=BaseModel)

MAX_JSON_DEPTH = 8  # our bodies nest two deep; a deeper one is refused before it is parsed
MAX_INTEGER_DIGITS = 20  # more digits than any allowed number: refused before int() sees it
JSON_MEDIA_TYPES = ("application/json",)
# min_confidence in a query: a decimal from 0 to 1 ("0.95", ".5", "1"), in the OpenAPI document too
QUERY_FRACTION = r"0{1,20}(\.[0-9]{0,20})?|0{0,19}1(\.0{0,20})?|\.[0-9]{1,20}"


def describe(exc: ValidationError) -> str:
    """One line naming every wrong field: ``batch_size: ...; digits.3: ...``."""
    parts = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        field = str(err["loc"][0]) if err["loc"] else ""
        # Our validators name the field themselves ("digits[2] is 11, ...").
        parts.append(msg if not field or msg.startswith(field) else f"{field}: {msg}")
    return "; ".join(dict.fromkeys(parts))


def check_content_type(content_type: str | None, body: bytes) -> None:
    """A body must be declared JSON: a ``text/plain`` POST (a CORS "simple" request that any web
    page can send) is refused (UnsupportedMediaType). An empty body needs no type (it means the
    defaults)."""
    if not body:
        return
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES:
        shown = f"{media_type!r}" if media_type else "no Content-Type"
        raise UnsupportedMediaType(
            f"request body sent with {shown}: send JSON with Content-Type: application/json"
        )


def parse_body(model: type[M], body: bytes, content_type: str | None, limits: Limits) -> M:
    """An HTTP request body, judged in this order by every backend: size (TooLarge),
    declared type (UnsupportedMediaType), then ``parse_json``."""
    _check_size(body, limits)
    check_content_type(content_type, body)
    return parse_json(model, body, limits)


def _check_size(body: bytes, limits: Limits) -> None:
    if len(body) > limits.max_body_bytes:
        raise TooLarge(
            f"request body of {len(body)} bytes is above the limit of {limits.max_body_bytes}"
        )


def parse_json(model: type[M], body: bytes, limits: Limits) -> M:
    """Validate a JSON body (``strict_json``'s rules): ``"3"`` is not a digit nor ``true`` a
    seed (strict numbers). No body means the defaults; anything but an object is InvalidRequest."""
    data = strict_json(body or b"{}", limits)  # whitespace alone is not a JSON text
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return validate(model, data, limits)


def strict_json(body: bytes, limits: Limits, what: str = "request body") -> Any:
    """The JSON value of ``body`` under the rules every route shares (``/generate``, ``/balance``,
    KServe V2, TorchServe): over ``max_body_bytes`` is TooLarge; not UTF-8, not JSON, nested
    deeper than ``MAX_JSON_DEPTH`` (checked before parsing, so no recursion limit is reached) or
    holding NaN/Infinity, literally or by overflow, is MalformedRequest; a repeated key is
    InvalidRequest. A number with no
    fraction is that integer (``30.0`` is 30). ``what`` names the text in the messages."""
    _check_size(body, limits)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"{what} is not valid JSON: not UTF-8 ({exc.reason})") from None
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise MalformedRequest(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_float=_json_number,
        )
    except _DuplicateKey as exc:
        raise InvalidRequest(f"{what} repeats the key {short(exc.key)}") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, a number of > 4300 digits
        raise MalformedRequest(f"{what} is not valid JSON: {exc}") from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _json_number(text: str) -> int | float:
    """A JSON number with no fraction is that integer, exactly (JSON Schema reads ``30.0`` as an
    integer too); an exponent too large to be a count stays a float (and is refused as one)."""
    number = Decimal(text)
    if abs(number.adjusted()) <= MAX_INTEGER_DIGITS and number == number.to_integral_value():
        return int(number)
    value = float(text)
    if math.isinf(value):  # 1e400: Infinity by another name
        raise ValueError(f"{short(text)} is beyond the range of a JSON number here")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    """How deep the brackets of a JSON text nest (strings skipped); no recursion, linear time."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def validate(model: type[M], data: Mapping[str, Any], limits: Limits) -> M:
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


# GET /generate's query holds GenerateRequest's fields as text: an integer in ASCII digits, a
# string as itself, and these two in forms of their own (the OpenAPI document takes them from here).
QUERY_TEXT_FORMS: dict[str, dict[str, Any]] = {
    "digits": {
        "schema": {"type": "string", "pattern": "^[0-9](,[0-9])*$"},
        "description": "One digit for all, or one per image separated by commas",
    },
    "min_confidence": {
        "schema": {"type": "string", "pattern": f"^({QUERY_FRACTION})$"},
        "description": "A decimal from 0 to 1, such as 0.95. " + CONFIDENCE_HELP,
    },
}


def parse_query(params: Mapping[str, list[str]], limits: Limits) -> GenerateRequest:
    """``GET /generate?seed=7&batch_size=20&digits=3&format=png`` (digits: ``3`` or ``1,2,3``)."""
    data: dict[str, Any] = {}
    for key, values in params.items():
        if key not in GenerateRequest.model_fields:
            raise InvalidRequest(f"unknown query parameter {key!r}")
        if len(values) != 1 and key != "digits":
            raise InvalidRequest(f"query parameter {key!r} given {len(values)} times")
        joined = ",".join(values)
        if key in ("format", "model"):
            data[key] = joined
        elif key == "min_confidence":
            data[key] = _query_fraction(key, joined)
        elif key == "digits" and ("," in joined):
            data[key] = [_query_int(key, part) for part in joined.split(",")]
        else:
            data[key] = _query_int(key, joined)
    return validate(GenerateRequest, data, limits)


def _query_fraction(key: str, text: str) -> float:
    """ASCII decimal notation from 0 to 1 (``0.95``, ``1``, ``.5``): no exponents, signs or
    spaces."""
    if not re.fullmatch(QUERY_FRACTION, text):
        raise InvalidRequest(
            f"{key}: {short(text)} is not a decimal number from 0 to 1, such as 0.95"
        )
    return float(text)


def _query_int(key: str, text: str) -> int:
    """ASCII digits only: Python's int() would also take " 7", "1_000" and other scripts' digits."""
    if not re.fullmatch(rf"[0-9]{{1,{MAX_INTEGER_DIGITS}}}", text):
        raise InvalidRequest(f"{key}: {short(text)} is not a whole number (ASCII digits 0-9)")
    return int(text)
