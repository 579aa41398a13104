"""Reading published versions: whether one exists, its manifest (with a verifier, only once its
signature verified), and the listing of them all (contract 3).

A version exists iff its manifest does, so every read starts there; a manifest naming another
model or version was copied or edited and is refused.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.contract import MANIFEST_NAME
from models.registry.errors import ObjectNotFound, RegistryError, VersionNotFound
from models.registry.layout import Layout
from models.registry.manifest import Manifest, StoredManifest
from models.registry.names import check_version_id, is_id
from models.registry.signing import ManifestVerifier
from models.registry.store import ObjectStore

log = logging.getLogger("models.registry")

LIST_WORKERS = 8  # manifests read at once by a listing (each one a GET on S3)


@dataclass(frozen=True)
class VersionInfo:
    """One row of ``list_versions``."""

    version: str
    created_at: datetime
    metrics: dict[str, Any]
    aliases: list[str]
    size: int  # bytes, all files
    manifest: Manifest


class Versions:
    """The published versions of one model in one store, read through ``verifier`` if any."""

    def __init__(
        self, store: ObjectStore, layout: Layout, verifier: ManifestVerifier | None
    ) -> None:
        self.store = store
        self.layout = layout
        self.verifier = verifier

    def where(self, version: str | None = None) -> str:
        return self.layout.where(self.store.location, version)

    def exists(self, version: str) -> bool:
        """A version exists iff its manifest does."""
        return self.store.stat(self.layout.manifest_key(check_version_id(version))) is not None

    def read(self, version: str, *, verify: bool = True) -> StoredManifest:
        """The version's manifest; with a verifier (and ``verify``), only a validly signed one."""
        model = self.layout.model
        key = self.layout.manifest_key(check_version_id(version))
        try:
            data, _ = self.store.get_bytes(key)
        except ObjectNotFound:
            raise VersionNotFound(
                f"no version {version} of model {model} in {self.store.location} "
                "(`dcgan models list` shows the versions there are)"
            ) from None
        signature = None
        if verify and self.verifier is not None:
            with contextlib.suppress(ObjectNotFound):
                signature, _ = self.store.get_bytes(self.layout.signature_key(version))
            self.verifier.verify(data, signature, self.where(version))
        manifest = Manifest.from_json(data, f"{key} in {self.store.location}")
        if manifest.model_name != model or manifest.version != version:
            raise RegistryError(
                f"{key} in {self.store.location} describes {manifest.model_name} version "
                f"{manifest.version}: it was copied or edited; the version cannot be used"
            )
        return StoredManifest(manifest, data, signature)

    def published(self) -> list[str]:
        """The ids of the published versions (those with a manifest), sorted."""
        keys = (
            self.layout.version_of(info.key)
            for info in self.store.list(self.layout.versions_prefix)
        )
        return sorted(v for v, name in keys if name == MANIFEST_NAME and is_id(v))

    def rows(self, versions: list[str], aliases_of: Mapping[str, list[str]]) -> list[VersionInfo]:
        """A listing row of each of ``versions``, oldest first, with its aliases (``aliases_of``:
        version -> alias names); one deleted meanwhile or unreadable is left out (and logged)."""

        def load(version: str) -> VersionInfo | None:
            try:
                manifest = self.read(version, verify=False).manifest
            except VersionNotFound:  # deleted meanwhile
                return None
            except RegistryError as exc:
                log.warning("registry.bad_manifest version=%s error=%s", version, exc)
                return None
            return VersionInfo(
                version=version,
                created_at=manifest.created_at,
                metrics=dict(manifest.metrics),
                aliases=aliases_of.get(version, []),
                size=sum(entry.size for entry in manifest.files.values()),
                manifest=manifest,
            )

        with ThreadPoolExecutor(max_workers=LIST_WORKERS) as pool:
            rows = [row for row in pool.map(load, versions) if row is not None]
        return sorted(rows, key=lambda row: (row.created_at, row.version))
