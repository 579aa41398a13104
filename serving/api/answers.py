"""The JSON bodies the operational routes answer with, declared once: the routes build their
answers from these models and the OpenAPI document (serving/api/openapi.py) takes its schemas
from them, so a new field is written here only."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serving.core.lifecycle import FailureKind, Source

ERROR_KINDS = [kind.name.lower() for kind in FailureKind]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublicModel(Answer):
    """What a client needs to reproduce and judge an answer, nothing about the deployment (the
    full manifest and backend are on /admin/model)."""

    model: str
    alias: str
    ready: bool = Field(description="A verified version is loaded")
    version: str | None
    signature: dict[str, Any] | None = Field(description="The generator's input contract")
    metrics: dict[str, Any] | None = Field(description="The version's evaluation")


class ServedModels(Answer):
    default: str = Field(description="Answers requests that name no model")
    models: list[PublicModel] = Field(min_length=1)


class Readiness(Answer):
    ready: bool
    version: str | None
    source: Source | None = Field(
        description="cache: the registry was unreachable at start; the alias's last version is "
        "served from the local cache (checksums verified) until it answers"
    )
    last_error: str | None
    error_kind: str | None = Field(
        description="What the last failure was; only 'refused' is not retried",
        json_schema_extra={"enum": [*ERROR_KINDS, None]},
    )


class ServerReadiness(Readiness):
    models: dict[str, Readiness] = Field(description="Each served model's own state, by name")


class Reloaded(Answer):
    version: str
    changed: bool


class ReloadAnswer(Reloaded):
    """The first model's version and change, and every reloaded model's."""

    models: dict[str, Reloaded] = Field(description="Each reloaded model's version and change")


class ReloadFailed(Answer):
    detail: str
    models: dict[str, Reloaded] = Field(description="What the models that did load did")
