"""Writing one version: its files hashed (each once), uploaded under the version's claim and
verified, then the manifest, last and create-only, which is what publishes it.

A version therefore has exactly its files and its manifest, or is not visible at all: an
interrupted publish leaves files without a manifest (no version), which ``cleanup`` removes once
they are older than the grace period.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from models.fileio import sha256_file
from models.registry.claims import Claims
from models.registry.errors import (
    PreconditionFailed,
    PublishInProgress,
    RegistryError,
    VersionExists,
)
from models.registry.layout import Layout
from models.registry.manifest import FileEntry, Manifest
from models.registry.names import check_file_name
from models.registry.signing import ManifestSigner
from models.registry.store import ObjectStore

log = logging.getLogger("models.registry")


def version_exists(where: str) -> VersionExists:
    return VersionExists(
        f"{where} already exists and versions are immutable: "
        "publish under another version id (or leave it out to get a new one)"
    )


def hash_files(
    files: Mapping[str, Path | str], hashed: Mapping[str, FileEntry]
) -> tuple[dict[str, FileEntry], dict[str, Path]]:
    """The manifest entries and local paths of ``files`` ({name in the version: local path}),
    by name. A file in ``hashed`` (its entry computed by the caller: an export records the sha256
    of what it wrote) is not read again, only its size checked, so no file is hashed twice and one
    changed since it was hashed is refused instead of published under a stale sum."""
    unknown = sorted(set(hashed) - set(files))
    if unknown:
        raise ValueError(f"hashed names files that are not published: {unknown}")
    entries: dict[str, FileEntry] = {}
    paths: dict[str, Path] = {}
    for name, raw_path in sorted(files.items()):
        check_file_name(name)
        path = Path(raw_path)
        if not path.is_file():
            raise RegistryError(f"cannot publish {name}: {path} is not a readable file")
        known = hashed.get(name)
        if known is None:
            sha256, size = sha256_file(path)
            known = FileEntry(sha256=sha256, size=size)
        elif path.stat().st_size != known.size:
            raise RegistryError(
                f"cannot publish {name}: {path} is {path.stat().st_size} bytes, "
                f"{known.size} when it was hashed; it changed since, nothing was published"
            )
        entries[name] = known
        paths[name] = path
    return entries, paths


def upload_version(
    store: ObjectStore,
    layout: Layout,
    claims: Claims,
    draft: Manifest,
    paths: Mapping[str, Path],
    on_file_uploaded: Callable[[str, int], None] | None = None,
    signer: ManifestSigner | None = None,
) -> Manifest:
    """Upload ``paths`` ({name: local file}, hashed into ``draft.files``) and then the manifest,
    preceded by its signature when a ``signer`` is given (so a signed version is never visible
    unsigned).

    Raises VersionExists for a taken id and PublishInProgress while another process holds the
    version's claim (or took it over). Returns the manifest as written (``created_at`` = now).
    """
    version = draft.version
    where = layout.where(store.location, version)
    manifest_key = layout.manifest_key(version)
    # A claim not refreshed for its lease belongs to a publisher that died (a crashed flow
    # run): it is taken over, so retrying that run publishes without a manual cleanup.
    claim = claims.acquire(version, "publish", stale_after_s=claims.lease_s)
    if claim is None:
        if store.stat(manifest_key) is not None:
            raise version_exists(where)
        raise PublishInProgress(
            f"{where} is claimed by {claims.holder(version)}; if that process is gone, a "
            f"publish takes the claim over once it is {claims.lease_s:.0f} s old (try again "
            "then), or publish under another version id"
        )
    published = claim_lost = False
    uploaded: list[str] = []
    started = time.monotonic()
    try:
        # A publisher that finished between our first check and our claim wrote its manifest
        # before it released the claim: this check sees it.
        if store.stat(manifest_key) is not None:
            raise version_exists(where)
        if claim.taken_over:  # what the dead publisher uploaded goes; ours replaces it
            leftovers = [i.key for i in store.list(layout.version_prefix(version))]
            store.delete([key for key in leftovers if key != claim.key])
        for name, path in paths.items():
            key = layout.file_key(version, name)
            uploaded.append(key)
            store.put_file(key, path)
            try:
                claims.refresh(claim, version)
            except PublishInProgress:
                claim_lost = True
                raise
            log.info("registry.uploaded %s size=%d", key, draft.files[name].size)
            if on_file_uploaded is not None:
                on_file_uploaded(name, draft.files[name].size)
        for name, entry in draft.files.items():
            info = store.stat(layout.file_key(version, name))
            if info is None or info.size != entry.size:
                raise RegistryError(
                    f"{name} of {where} is "
                    f"{'missing' if info is None else f'{info.size} bytes'} after upload, "
                    f"expected {entry.size}: nothing was published, try again"
                )
        manifest = draft.model_copy(update={"created_at": datetime.now(UTC)})
        manifest_bytes = manifest.to_json()
        if signer is not None:
            uploaded.append(layout.signature_key(version))
            store.put_bytes(layout.signature_key(version), signer.sign(manifest_bytes))
        try:
            claims.refresh(claim, version)  # fence: still ours right before the manifest
        except PublishInProgress:
            claim_lost = True
            raise
        try:
            store.put_bytes(manifest_key, manifest_bytes, if_absent=True)
        except PreconditionFailed:
            uploaded.clear()  # the files now belong to whoever wrote that manifest
            raise version_exists(where) from None
        published = True
    finally:
        # Without the claim, the keys may already be someone else's: leave them to cleanup.
        if not published and not claim_lost:
            with contextlib.suppress(Exception):
                store.delete(uploaded)
        if not claim_lost:
            claims.release(claim)
    log.info(
        "registry.published model=%s version=%s files=%d bytes=%d seconds=%.2f store=%s",
        layout.model,
        version,
        len(draft.files),
        sum(e.size for e in draft.files.values()),
        time.monotonic() - started,
        store.location,
    )
    return manifest
