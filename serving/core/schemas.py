"""Request bodies of /generate and /balance, defined once and validated the same way by every
backend (the bytes are read by serving/core/decoding.py; the OpenAPI document is derived from these
models).

The ONNX Runtime service and the TorchServe handler both parse raw bytes through these models, so
a request means the same thing, and fails with the same message, whichever backend answers it.
Limits that are configuration (the largest batch) reach the validators through the context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.contract import MAX_SEED, NUM_CLASSES
from models.registry.names import ID

Seed = Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]
Digit = Annotated[StrictInt, Field(ge=0, le=NUM_CLASSES - 1)]
Confidence = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
MAX_CANDIDATES_CEILING = 1024  # as DCGAN_SERVE_MAX_CANDIDATES's own bound
MaxCandidates = Annotated[StrictInt, Field(ge=1, le=MAX_CANDIDATES_CEILING)]
MAX_CANDIDATES_HELP = (
    "With min_confidence: at most this many candidates per image (default and ceiling: the "
    "server's DCGAN_SERVE_MAX_CANDIDATES). A filtered request is admitted for its worst case, "
    "images x max_candidates, so a lower value lets more images fit in one request."
)
ModelName = Annotated[str, Field(pattern=f"^{ID.pattern}$", max_length=100)]
MODEL_HELP = "The served model to answer with (GET /models lists them). Omitted: the first served."
CONFIDENCE_HELP = (
    "Keep only images that the version's evaluation classifier reads as the requested digit "
    "with at least this probability (0..1): each image is its first such candidate from the "
    "seed's fixed stream, so answers stay deterministic and prefix-stable; the share accepted "
    "is in X-Filter-Acceptance-Rate. 0 gives the unfiltered images. Omitted: unfiltered."
)
DEFAULT_BATCH_SIZE = 10


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
