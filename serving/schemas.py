"""Request bodies of /generate and /balance, validated the same way by every backend.

The ONNX Runtime service and the TorchServe handler both parse raw bytes through these models, so
a request means the same thing, and fails with the same message, whichever backend answers it.
Limits that are configuration (the largest batch) reach the validators through the context.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import numpy as np
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

from models.latent import MAX_SEED, NUM_CLASSES
from serving.errors import RequestError

M = TypeVar("M", bound=BaseModel)

Seed = Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]


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


def _limits(info: ValidationInfo) -> Limits:
    context = info.context if isinstance(info.context, Mapping) else {}
    limits = context.get("limits")
    return limits if isinstance(limits, Limits) else Limits()


class GenerateRequest(BaseModel):
    """``digits``: one digit for every image, a list with one per image, or omitted (0..9 cycle)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: Seed | None = Field(
        default=None, description="0..2^63-1. Omitted: the server draws one and names it in X-Seed."
    )
    batch_size: StrictInt = Field(
        default=10, ge=1, description="Images to generate (1..the server's limit, default 1024)."
    )
    digits: int | list[int] | None = Field(
        default=None, description="One digit for all, one per image, or omitted for 0,1,..,9,0,.."
    )
    format: OutputFormat = Field(default=OutputFormat.JSON, description="json, npy or png.")

    @field_validator("digits", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [_digit(item, f"digits[{i}]") for i, item in enumerate(value)]
        return _digit(value, "digits")

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> GenerateRequest:
        limit = _limits(info).max_batch_size
        if self.batch_size > limit:
            raise ValueError(f"batch_size {self.batch_size} is above this server's limit {limit}")
        if isinstance(self.digits, list) and len(self.digits) != self.batch_size:
            raise ValueError(
                f"digits lists {len(self.digits)} digits but batch_size is {self.batch_size}: "
                "give one digit per image, a single digit, or none"
            )
        return self


class BalanceRequest(BaseModel):
    """Class counts of the client's dataset; the answer fills every class up to the target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    counts: list[int] | dict[str, int] = Field(
        description="Images per class now: a list of 10 counts, or {digit: count} (missing = 0)."
    )
    target: int | list[int] | dict[str, int] | None = Field(
        default=None,
        description="Wanted images per class: one number for all, 10 numbers, {digit: n}, or "
        "omitted for the largest count.",
    )
    seed: Seed | None = Field(default=None, description="Omitted: drawn by the server.")

    @field_validator("counts", "target", mode="before")
    @classmethod
    def _per_class_counts(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name == "target":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and info.field_name == "target":
            return _count(value, "target")
        return list(_per_class(value, str(info.field_name)))

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> BalanceRequest:
        total = int(self.deficits().sum())
        limit = _limits(info).max_balance_images
        if total > limit:
            raise ValueError(
                f"balancing needs {total} images, above this server's limit {limit}: "
                "lower the target or ask for fewer classes at a time"
            )
        return self

    def deficits(self) -> np.ndarray:
        """Images to generate per class: max(0, target - count)."""
        counts = np.asarray(self.counts, dtype=np.int64)
        if self.target is None:
            target = np.full(NUM_CLASSES, counts.max(), dtype=np.int64)
        elif isinstance(self.target, int):
            target = np.full(NUM_CLASSES, self.target, dtype=np.int64)
        else:
            target = np.asarray(self.target, dtype=np.int64)
        deficits: np.ndarray = np.maximum(target - counts, 0)
        return deficits


def _digit(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < NUM_CLASSES:
        raise ValueError(f"{where} is {value!r}, not a digit 0..{NUM_CLASSES - 1}")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where} is {value!r}, not a count (a whole number >= 0)")
    return value


def _per_class(value: Any, name: str) -> list[int]:
    """A list of 10 counts, or {digit: count} with digits as JSON keys ("3"); missing = 0."""
    if isinstance(value, list):
        if len(value) != NUM_CLASSES:
            raise ValueError(f"{name} must list {NUM_CLASSES} numbers, got {len(value)}")
        return [_count(item, f"{name}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = [0] * NUM_CLASSES
        for key, count in value.items():
            digit = int(key) if isinstance(key, str) and key.strip().isdigit() else key
            out[_digit(digit, f"{name} key {key!r}")] = _count(count, f"{name}[{key}]")
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


def parse_json(model: type[M], body: bytes, limits: Limits) -> M:
    """Validate a JSON body: ``"3"`` is not a digit nor ``true`` a seed (strict numbers)."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(
            f"request body of {len(body)} bytes is above the limit of {limits.max_body_bytes}", 413
        )
    if not body.strip():
        body = b"{}"
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}", 400) from None
    if not isinstance(data, dict):
        raise RequestError("request body must be a JSON object", 422)
    return validate(model, data, limits)


def validate(model: type[M], data: Mapping[str, Any], limits: Limits) -> M:
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise RequestError(describe(exc)) from None


def parse_query(params: Mapping[str, list[str]], limits: Limits) -> GenerateRequest:
    """``GET /generate?seed=7&batch_size=20&digits=3&format=png`` (digits: ``3`` or ``1,2,3``)."""
    data: dict[str, Any] = {}
    for key, values in params.items():
        if key not in GenerateRequest.model_fields:
            raise RequestError(f"unknown query parameter {key!r}")
        if len(values) != 1 and key != "digits":
            raise RequestError(f"query parameter {key!r} given {len(values)} times")
        joined = ",".join(values)
        if key == "format":
            data[key] = joined
        elif key == "digits" and ("," in joined):
            data[key] = [_query_int(key, part) for part in joined.split(",")]
        else:
            data[key] = _query_int(key, joined)
    return validate(GenerateRequest, data, limits)


def _query_int(key: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise RequestError(f"{key}: {text!r} is not a whole number") from None
