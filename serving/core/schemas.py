"""Request bodies of /generate and /balance, validated the same way by every backend, and the
strict JSON rules (`strict_json`) that every route, KServe V2 included, reads a body with.

The ONNX Runtime service and the TorchServe handler both parse raw bytes through these models, so
a request means the same thing, and fails with the same message, whichever backend answers it.
Limits that are configuration (the largest batch) reach the validators through the context.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.contract import MAX_SEED, NUM_CLASSES
from models.registry.names import ID
from serving.core.errors import (
    InvalidRequest,
    MalformedRequest,
    TooLarge,
    UnsupportedMediaType,
)

M = TypeVar("M", bound=BaseModel)

Seed = Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]
Digit = Annotated[StrictInt, Field(ge=0, le=NUM_CLASSES - 1)]
Confidence = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
MAX_CANDIDATES_CEILING = 1024  # as DCGAN_SERVE_MAX_CANDIDATES's own bound
DEFAULT_MAX_CANDIDATES = 16  # DCGAN_SERVE_MAX_CANDIDATES's default, the same on every backend
MaxCandidates = Annotated[StrictInt, Field(ge=1, le=MAX_CANDIDATES_CEILING)]
MAX_CANDIDATES_HELP = (
    "With min_confidence: at most this many candidates per image (default and ceiling: the "
    "server's DCGAN_SERVE_MAX_CANDIDATES). A filtered request is admitted for its worst case, "
    "images x max_candidates, so a lower value lets more images fit in one request."
)
ModelName = Annotated[str, Field(pattern=f"^{ID.pattern}$", max_length=100)]
MODEL_HELP = "The served model to answer with (GET /models lists them). Omitted: the first served."
# min_confidence in a query: a decimal from 0 to 1 ("0.95", ".5", "1"), in the OpenAPI document too
QUERY_FRACTION = r"0{1,20}(\.[0-9]{0,20})?|0{0,19}1(\.0{0,20})?|\.[0-9]{1,20}"
CONFIDENCE_HELP = (
    "Keep only images that the version's evaluation classifier reads as the requested digit "
    "with at least this probability (0..1): each image is its first such candidate from the "
    "seed's fixed stream, so answers stay deterministic and prefix-stable; the share accepted "
    "is in X-Filter-Acceptance-Rate. 0 gives the unfiltered images. Omitted: unfiltered."
)
DEFAULT_BATCH_SIZE = 10
MAX_JSON_DEPTH = 8  # our bodies nest two deep; a deeper one is refused before it is parsed
MAX_INTEGER_DIGITS = 20  # more digits than any allowed number: refused before int() sees it
JSON_MEDIA_TYPES = ("application/json",)


class OutputFormat(StrEnum):
    JSON = "json"  # labels and one base64 PNG per image
    NPY = "npy"  # application/x-npy, uint8 N x 28 x 28
    PNG = "png"  # one grid image, for people


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; from the service settings."""

    max_batch_size: int = 1024
    max_balance_images: int = 60_000
    max_body_bytes: int = 64 * 1024
    max_class_count: int = 1_000_000_000  # each count and target of /balance


def _limits(info: ValidationInfo) -> Limits:
    context = info.context if isinstance(info.context, Mapping) else {}
    limits = context.get("limits")
    return limits if isinstance(limits, Limits) else Limits()


class GenerateRequest(BaseModel):
    """Image i is digit ``digits[i % len(digits)]``: a list is repeated to the batch size (and a
    batch smaller than the list takes its first digits), so no combination of the two fields is
    refused. One digit is a list of one; omitted, the digits cycle 0..9."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: Seed | None = Field(
        default=None, description="0..2^63-1. Omitted: the server draws one and names it in X-Seed."
    )
    batch_size: StrictInt = Field(
        default=DEFAULT_BATCH_SIZE,
        ge=1,
        description="Images to generate (1..the server's limit). Omitted: as many as a list of "
        f"digits has, else {DEFAULT_BATCH_SIZE}.",
    )
    digits: Digit | Annotated[list[Digit], Field(min_length=1)] | None = Field(
        default=None,
        description="One digit for all, a list repeated to batch_size, or omitted: 0,1,..,9,0,..",
    )
    format: OutputFormat = Field(default=OutputFormat.JSON, description="json, npy or png.")
    min_confidence: Confidence | None = Field(default=None, description=CONFIDENCE_HELP)
    max_candidates: MaxCandidates | None = Field(default=None, description=MAX_CANDIDATES_HELP)
    model: ModelName | None = Field(default=None, description=MODEL_HELP)

    @model_validator(mode="before")
    @classmethod
    def _batch_of_the_list(cls, data: Any) -> Any:
        """A list of digits without a batch size asks for one image per digit."""
        if isinstance(data, dict) and "batch_size" not in data:
            digits = data.get("digits")
            if isinstance(digits, list) and digits:
                return {**data, "batch_size": len(digits)}
        return data

    @field_validator("min_confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any) -> Any:
        return _number(value, "min_confidence")

    @field_validator("digits", mode="before")
    @classmethod
    def _digits(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            limit = _limits(info).max_batch_size
            if not 1 <= len(value) <= limit:
                raise ValueError(f"digits lists {len(value)} digits: give 1..{limit}, or one digit")
            return [_digit(item, f"digits[{i}]") for i, item in enumerate(value)]
        return _digit(value, "digits")

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> GenerateRequest:
        limit = _limits(info).max_batch_size
        if self.batch_size > limit:
            raise ValueError(f"batch_size {self.batch_size} is above this server's limit {limit}")
        return self


Count = Annotated[StrictInt, Field(ge=0)]
DigitKey = Annotated[str, Field(pattern=r"^[0-9]$")]
PerClass = Annotated[list[Count], Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]


class BalanceRequest(BaseModel):
    """Class counts of the client's dataset; the answer fills every class up to the target.

    Every count and target is bounded (``Limits.max_class_count``) before any arithmetic, and the
    deficits are summed in Python integers, so no request can overflow into a small total.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    counts: PerClass | dict[DigitKey, Count] = Field(
        description="Images per class now: a list of 10 counts, or {digit: count} (missing = 0)."
    )
    target: Count | PerClass | dict[DigitKey, Count] | None = Field(
        default=None,
        description="Wanted images per class: one number for all, 10 numbers, {digit: n}, or "
        "omitted for the largest count.",
    )
    seed: Seed | None = Field(default=None, description="Omitted: drawn by the server.")
    min_confidence: Confidence | None = Field(default=None, description=CONFIDENCE_HELP)
    max_candidates: MaxCandidates | None = Field(default=None, description=MAX_CANDIDATES_HELP)
    model: ModelName | None = Field(default=None, description=MODEL_HELP)

    @field_validator("min_confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any) -> Any:
        return _number(value, "min_confidence")

    @field_validator("counts", "target", mode="before")
    @classmethod
    def _per_class_counts(cls, value: Any, info: ValidationInfo) -> Any:
        limit = _limits(info).max_class_count
        if value is None and info.field_name == "target":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and info.field_name == "target":
            return _count(value, "target", limit)
        return list(_per_class(value, str(info.field_name), limit))

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> BalanceRequest:
        total = sum(self.deficits())
        limit = _limits(info).max_balance_images
        if total > limit:
            raise ValueError(
                f"balancing needs {total} images, above this server's limit {limit}: "
                "lower the target or ask for fewer classes at a time"
            )
        return self

    def deficits(self) -> list[int]:
        """Images to generate per class: max(0, target - count), in Python integers."""
        counts = _as_list(self.counts)
        if self.target is None:
            targets = [max(counts)] * NUM_CLASSES
        elif isinstance(self.target, int):
            targets = [self.target] * NUM_CLASSES
        else:
            targets = _as_list(self.target)
        return [max(0, t - c) for t, c in zip(targets, counts, strict=True)]


def _as_list(value: list[int] | dict[str, int]) -> list[int]:
    """The validators turn {digit: count} into a list of 10; a dict here is a bug."""
    assert isinstance(value, list), "per-class counts are normalised to a list"
    return value


def _number(value: Any, where: str) -> Any:
    """A JSON number as it is (its range is the field's): ``true`` or ``"0.9"`` is not one."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"{where} is {short(value)}, not a number")
    return value


def _digit(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < NUM_CLASSES:
        raise ValueError(f"{where} is {value!r}, not a digit 0..{NUM_CLASSES - 1}")
    return value


def _count(value: Any, where: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where} is {short(value)}, not a count (a whole number >= 0)")
    if value > limit:
        raise ValueError(f"{where} is {short(value)}, above this server's limit {limit}")
    return value


def short(value: Any) -> str:
    """A value for an error message, cut short (a client's 4,000-digit number stays theirs)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _per_class(value: Any, name: str, limit: int) -> list[int]:
    """A list of 10 counts, or {digit: count} with the digits "0".."9" as keys; missing = 0."""
    if isinstance(value, list):
        if len(value) != NUM_CLASSES:
            raise ValueError(f"{name} must list {NUM_CLASSES} numbers, got {len(value)}")
        return [_count(item, f"{name}[{i}]", limit) for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = [0] * NUM_CLASSES
        for key, count in value.items():
            if not (isinstance(key, str) and re.fullmatch(r"[0-9]", key)):
                raise ValueError(f"{name} key {short(key)} is not a digit 0..{NUM_CLASSES - 1}")
            out[int(key)] = _count(count, f"{name}[{key}]", limit)
        return out
    raise ValueError(f"{name} must be a list of {NUM_CLASSES} counts or {{digit: count}}")


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
