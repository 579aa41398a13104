"""``manifest.json``: what a published model version is, written last so its presence publishes it.

Unknown fields are kept (``extra="allow"``): a manifest written by a newer release still reads,
and ``schema_version`` says which layout a reader is looking at.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.registry.errors import RegistryError
from models.registry.names import check_file_name, is_id

SCHEMA_VERSION = 1


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    model_name: str
    version: str
    created_at: datetime
    files: dict[str, FileEntry]
    signature: dict[str, Any] = Field(default_factory=dict)  # contract 2, GeneratorSignature
    metrics: dict[str, Any] = Field(default_factory=dict)
    training_config: dict[str, Any] = Field(default_factory=dict)
    dataset_md5: dict[str, str] = Field(default_factory=dict)  # file name -> md5
    code_version: str | None = None  # e.g. git commit, "+dirty" when modified
    library_versions: dict[str, str] = Field(default_factory=dict)  # torch, onnx, onnxruntime...
    extra: dict[str, Any] = Field(default_factory=dict)  # export parity, opset, ...

    @field_validator("model_name", "version")
    @classmethod
    def _an_id(cls, value: str) -> str:
        if not is_id(value):  # it becomes a path, an object key and a response header
            raise ValueError(f"{value!r} is not a valid name (letters, digits, '.', '_', '-')")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must carry a timezone")
        return value.astimezone(UTC)

    def present(self, files: Collection[str], optional: Collection[str] = ()) -> set[str]:
        """``files`` and those of ``optional`` this version has (what a pull asks for)."""
        return {*files, *(name for name in optional if name in self.files)}

    def select(
        self, files: Collection[str] | None, optional: Collection[str], origin: str
    ) -> list[str]:
        """The file names a pull fetches (all when ``files`` is None), each checked before it
        becomes a local path; a required name the version lacks is a RegistryError."""
        names = sorted(self.files if files is None else self.present(files, optional))
        for name in names:
            check_file_name(name)
            if name not in self.files:
                raise RegistryError(
                    f"{origin} has no file {name!r} "
                    f"(it has {', '.join(sorted(self.files)) or 'none'})"
                )
        return names

    def to_json(self) -> bytes:
        """Stable bytes (sorted keys): equal manifests serialise identically."""
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, origin: str) -> Manifest:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise RegistryError(
                f"{origin} is not a valid manifest ({where}: {first['msg']}); "
                "the version cannot be used"
            ) from exc


class StoredManifest(NamedTuple):
    """A version's manifest as stored: parsed, its exact bytes, and its signature document (None
    when unsigned, or not read because nothing verifies it)."""

    manifest: Manifest
    data: bytes
    signature: bytes | None
