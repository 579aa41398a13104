"""Pulling one version into the local cache: reused when it matches the store's manifest, else
downloaded into a hidden staging directory and renamed into place once every sha256 verified
(cache.py), so a cached version directory is always complete (contract 3)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from models.registry.cache import ModelCache
from models.registry.errors import ObjectNotFound, RegistryError
from models.registry.layout import Layout
from models.registry.manifest import StoredManifest
from models.registry.store import ObjectStore

log = logging.getLogger("models.registry")


def pull_version(
    store: ObjectStore,
    layout: Layout,
    stored: StoredManifest,
    names: list[str],
    cache: ModelCache,
) -> Path:
    """The cache's directory of ``stored``'s version holding ``names`` (checked by the caller)."""
    version = stored.manifest.version
    where = layout.where(store.location, version)
    if cache.holds(version, stored.data, names):
        log.info("registry.pull_cached model=%s version=%s", layout.model, version)
        cache.touch(version)
        return cache.path(version)
    started = time.monotonic()

    def chunks_of(name: str) -> Iterator[bytes]:
        try:
            yield from store.iter_chunks(layout.file_key(version, name))
        except ObjectNotFound:
            raise RegistryError(
                f"{name} of {where} is listed in the manifest but missing "
                "from the store: the version is damaged (or was deleted meanwhile)"
            ) from None

    dest = cache.fill(version, stored, names, chunks_of, where)
    log.info(
        "registry.pulled model=%s version=%s files=%d dir=%s seconds=%.2f",
        layout.model,
        version,
        len(names),
        dest,
        time.monotonic() - started,
    )
    return dest
