"""The local model cache: verified copies of published versions, ``<root>/<model>/<version>/``.

A version directory holds the files a consumer asked for plus the version's ``manifest.json``
(written last). It only ever appears complete: files are staged in a hidden directory, verified
against the manifest and renamed into place. Beside the versions, ``.alias-<alias>.json`` records
the version a server last loaded for an alias, so a server that starts while the registry is
unreachable can serve that version from here, after verifying every checksum again.

Errors writing the cache (disk full, permission denied, read-only file system) are raised as
:class:`CacheError` naming the directory, never as a registry outage.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from models.contract import MANIFEST_NAME, SIGNATURE_NAME
from models.fileio import sha256_file, write_atomic
from models.registry.errors import CacheError, IntegrityError, RegistryError
from models.registry.manifest import Manifest, StoredManifest
from models.registry.names import check_file_name

log = logging.getLogger("models.registry.cache")

ALIAS_RECORD = ".alias-{alias}.json"
STALE_AFTER_S = 3600.0  # staging directories of pulls that died (kill -9) are swept after this


class ModelCache:
    """Verified local copies of one model's versions under ``root/<model>/``."""

    def __init__(self, root: Path | str, model: str) -> None:
        self.base = Path(root).expanduser() / model

    def path(self, version: str) -> Path:
        return self.base / version

    # -- reading ----------------------------------------------------------------------------------

    def holds(self, version: str, manifest_bytes: bytes, names: Collection[str]) -> bool:
        """The version's directory holds this exact manifest and each of ``names`` with the size
        and sha256 the manifest lists (every file is hashed again)."""
        directory = self.path(version)
        try:
            if (directory / MANIFEST_NAME).read_bytes() != manifest_bytes:
                return False
            manifest = Manifest.from_json(manifest_bytes, str(directory / MANIFEST_NAME))
            for name in names:
                entry = manifest.files[name]
                path = directory / name
                if path.stat().st_size != entry.size or sha256_file(path)[0] != entry.sha256:
                    log.warning("registry.cache_invalid dir=%s file=%s", directory, name)
                    return False
        except (OSError, KeyError, RegistryError):
            return False
        return True

    def cached_manifest(self, version: str) -> tuple[Manifest, bytes]:
        """The manifest stored with a cached version (what it was verified against when pulled)."""
        path = self.path(version) / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RegistryError(
                f"version {version} is not in the cache at {self.base}: {exc.strerror}"
            ) from exc
        return Manifest.from_json(data, str(path)), data

    def cached_signature(self, version: str) -> bytes | None:
        """The signature pulled with a cached version; None when it came unsigned."""
        try:
            return (self.path(version) / SIGNATURE_NAME).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"cannot read the cached signature of {version}: {exc}") from exc

    # -- writing ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn an OSError of a cache write into a CacheError that names the cache directory."""
        try:
            yield
        except OSError as exc:
            raise CacheError(self.base, exc) from exc

    @contextlib.contextmanager
    def staging(self, version: str) -> Iterator[Path]:
        """A fresh hidden directory to download into; removed afterwards whatever happens."""
        with self.writing():
            self.base.mkdir(parents=True, exist_ok=True)
            self._sweep()
            staging = Path(
                tempfile.mkdtemp(dir=self.base, prefix=f".{version}.", suffix=".partial")
            )
            os.chmod(staging, 0o755)  # mkdtemp makes 0700
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def write_into(self, staging: Path, name: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Write ``chunks`` to the file ``name`` of ``staging``; (hex sha256, size) written.

        ``name`` is checked again here, so whatever a manifest lists, only a new file directly
        inside the staging directory is created (O_EXCL), never through a link (O_NOFOLLOW).
        Errors of the chunks' source (the store) pass through unchanged; errors writing are
        CacheError."""
        check_file_name(name)
        digest = hashlib.sha256()
        size = 0
        with self.writing():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fh: BinaryIO = os.fdopen(os.open(staging / name, flags, 0o644), "wb")
        try:
            for chunk in chunks:
                with self.writing():
                    fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        finally:
            with self.writing():
                fh.close()
        return digest.hexdigest(), size

    def fill(
        self,
        version: str,
        stored: StoredManifest,
        names: Collection[str],
        chunks_of: Callable[[str], Iterable[bytes]],
        where: str,
    ) -> Path:
        """Download ``names`` (``chunks_of(name)`` streams one) into a staging directory, verify
        each against the manifest (IntegrityError naming ``where``), and install the directory."""
        with self.staging(version) as staging:
            for name in names:
                entry = stored.manifest.files[name]
                actual, size = self.write_into(staging, name, chunks_of(name))
                if actual != entry.sha256 or size != entry.size:
                    raise IntegrityError(
                        name,
                        entry.sha256,
                        actual,
                        where=where,
                        expected_size=entry.size,
                        actual_size=size,
                    )
            return self.install(staging, version, stored, names)

    def install(
        self, staging: Path, version: str, stored: StoredManifest, names: Collection[str]
    ) -> Path:
        """Rename the verified staging directory into place, replacing an incomplete one."""
        dest = self.path(version)
        manifest_bytes = stored.data
        with self.writing():
            if stored.signature is not None:  # verified again when served from the cache
                (staging / SIGNATURE_NAME).write_bytes(stored.signature)
            (staging / MANIFEST_NAME).write_bytes(manifest_bytes)  # last: marks it complete
            for _ in range(5):
                try:
                    os.rename(staging, dest)  # atomic; fails if dest exists and is not empty
                    return dest
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    if self.holds(version, manifest_bytes, names):
                        return dest  # a concurrent pull of the same version finished first
                trash = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.stale")
                with contextlib.suppress(FileNotFoundError):
                    os.rename(dest, trash)
                shutil.rmtree(trash, ignore_errors=True)
        raise RegistryError(f"could not install the pulled files into {dest}: it keeps changing")

    def touch(self, version: str) -> None:
        """Mark a version as just used (pruning keeps the most recently used)."""
        with contextlib.suppress(OSError):
            os.utime(self.path(version))

    # -- which version an alias last served -------------------------------------------------------

    def remember(self, alias: str, version: str) -> None:
        """Record (atomically) that ``version`` was loaded and verified for ``alias``."""
        record = {"version": version, "verified_at": datetime.now(UTC).isoformat()}
        target = self.base / ALIAS_RECORD.format(alias=alias)
        with self.writing():
            write_atomic(target, json.dumps(record).encode())

    def remembered(self, alias: str) -> str | None:
        """The version last loaded for ``alias`` from this cache, if any."""
        path = self.base / ALIAS_RECORD.format(alias=alias)
        try:
            version = json.loads(path.read_bytes())["version"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return version if isinstance(version, str) else None

    # -- keeping it small -------------------------------------------------------------------------

    def prune(self, keep: int, protect: Collection[str] = ()) -> list[str]:
        """Keep the versions in ``protect`` and the most recently used others, ``keep`` in all
        (at least the protected ones); delete the rest. Returns the versions removed."""
        try:
            versions = [p for p in self.base.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError:
            return []
        kept = set(protect)
        removed: list[str] = []
        for directory in sorted(versions, key=_mtime, reverse=True):
            if directory.name in kept:
                continue
            if len(kept) < keep:
                kept.add(directory.name)
                continue
            trash = directory.with_name(f".{directory.name}.{secrets.token_hex(4)}.stale")
            try:
                os.rename(directory, trash)  # gone from view at once, then deleted
            except OSError:
                continue
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(directory.name)
        if removed:
            log.info("registry.cache_pruned dir=%s versions=%s", self.base, ",".join(removed))
        return removed

    def _sweep(self) -> None:
        limit = time.time() - STALE_AFTER_S
        for leftover in [*self.base.glob(".*.partial"), *self.base.glob(".*.stale")]:
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < limit:
                    shutil.rmtree(leftover, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
