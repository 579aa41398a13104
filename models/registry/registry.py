"""The model registry: immutable versions, movable aliases, verified pulls (contract 3).

Layout on the store (an S3 bucket or a local directory, same keys)::

    <model>/versions/<version>/<file>...        the artifacts, uploaded first
    <model>/versions/<version>/manifest.json    written last, create-only: it publishes the version
    <model>/aliases/<alias>.json                {"version", "previous", "updated_at"}

While a publish, delete or cleanup works on a version it holds a claim object,
``<model>/versions/<version>/.claim.json`` (created only if absent, refreshed by compare-and-swap,
removed at the end), so two writers never touch one version's files at the same time. A published
version therefore has exactly its files and its manifest; a claim left behind by a killed process
is taken over by :meth:`ModelRegistry.cleanup` once it is older than the grace period.

Why each guarantee holds, on both stores (see store.py for the primitives):

- A version exists iff its manifest exists; the manifest is the last write, so a reader never
  sees a version with missing files, and an interrupted publish leaves no visible version.
- Publishing an existing id fails and changes nothing: the manifest is checked before the claim,
  re-checked after it (a publisher that finished in between has written its manifest before
  releasing its claim), and finally written create-only (``If-None-Match: *`` / ``link()``).
- Alias moves are one atomic object write, made with compare-and-swap on the alias's etag
  (``If-Match`` / a directory lock), so concurrent moves never corrupt an alias nor lose the
  ``previous`` that rollback returns to.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import secrets
import socket
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from models.registry.cache import ModelCache
from models.registry.errors import (
    AliasNotFound,
    ConcurrentUpdate,
    IntegrityError,
    InvalidName,
    ObjectNotFound,
    PreconditionFailed,
    PublishInProgress,
    RegistryError,
    VersionExists,
    VersionInUse,
    VersionNotFound,
)
from models.registry.manifest import MANIFEST_NAME, FileEntry, Manifest, sha256_file
from models.registry.store import ObjectInfo, ObjectStore

log = logging.getLogger("models.registry")

CLAIM_NAME = ".claim.json"
LATEST = "latest"
PRODUCTION = "production"
DEFAULT_GRACE_S = 3600.0

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _check(pattern: re.Pattern[str], value: str, what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value) or ".." in value:
        raise InvalidName(f"invalid {what} {value!r}: {rule}")
    return value


def check_model_name(name: str) -> str:
    return _check(_ID, name, "model name", "use letters, digits, '.', '_', '-' (no '..')")


def check_version_id(version: str) -> str:
    return _check(
        _ID,
        version,
        "version id",
        "use up to 100 letters, digits, '.', '_', '-', starting with a letter or digit, no '..'",
    )


def check_alias(alias: str) -> str:
    return _check(_ALIAS, alias, "alias", "use lowercase letters, digits, '_', '-'")


def check_file_name(name: str) -> str:
    _check(_FILE, name, "file name", "use letters, digits, '.', '_', '-', no '/' or '..'")
    if name == MANIFEST_NAME:
        raise InvalidName(f"file name {name!r} is reserved for the manifest")
    return name


def new_version_id(now: datetime | None = None) -> str:
    """Sortable by time: ``20261122T115443Z-3fa9c1`` (UTC second + 24 random bits)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


_EPOCH = datetime.fromtimestamp(0, UTC)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AliasRecord:
    version: str
    previous: str | None = None
    updated_at: datetime = field(default_factory=_now)

    def to_json(self) -> bytes:
        body = {
            "version": self.version,
            "previous": self.previous,
            "updated_at": self.updated_at.isoformat(),
        }
        return (json.dumps(body, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, origin: str) -> AliasRecord:
        try:
            body = json.loads(data)
            version = check_version_id(body["version"])
            previous = body.get("previous")
            if previous is not None:
                check_version_id(previous)
            updated = body.get("updated_at")
            updated_at = datetime.fromisoformat(updated) if updated else _EPOCH
        except (ValueError, TypeError, KeyError) as exc:
            raise RegistryError(
                f"{origin} is not a valid alias ({exc}); set the alias again to repair it"
            ) from exc
        if updated_at.tzinfo is None:
            updated_at = updated_at.replace(tzinfo=UTC)
        return cls(version=version, previous=previous, updated_at=updated_at)


@dataclass(frozen=True)
class VersionInfo:
    """One row of ``list_versions``."""

    version: str
    created_at: datetime
    metrics: dict[str, Any]
    aliases: list[str]
    size: int  # bytes, all files
    manifest: Manifest


@dataclass
class _Claim:
    key: str
    token: str
    purpose: str
    etag: str


class ModelRegistry:
    """Versions and aliases of one model in one store.

    ``grace_period_s``: how old the leftovers of an unfinished publish (and a claim) must be
    before :meth:`cleanup` treats the process that wrote them as dead.
    """

    def __init__(
        self,
        store: ObjectStore,
        model_name: str,
        *,
        grace_period_s: float = DEFAULT_GRACE_S,
        cas_attempts: int = 100,
    ) -> None:
        self.store = store
        self.model = check_model_name(model_name)
        self.grace_period_s = grace_period_s
        self.cas_attempts = cas_attempts

    # -- keys -------------------------------------------------------------------------------------

    @property
    def _versions_prefix(self) -> str:
        return f"{self.model}/versions/"

    def _version_prefix(self, version: str) -> str:
        return f"{self._versions_prefix}{version}/"

    def _file_key(self, version: str, name: str) -> str:
        return f"{self._version_prefix(version)}{name}"

    def _manifest_key(self, version: str) -> str:
        return self._file_key(version, MANIFEST_NAME)

    def _claim_key(self, version: str) -> str:
        return self._file_key(version, CLAIM_NAME)

    def _alias_key(self, alias: str) -> str:
        return f"{self.model}/aliases/{alias}.json"

    def _where(self, version: str | None = None) -> str:
        what = f"model {self.model}" + (f" version {version}" if version else "")
        return f"{what} in {self.store.location}"

    # -- claims (per-version write locks) ---------------------------------------------------------

    def _claim_body(self, token: str, purpose: str) -> bytes:
        body = {
            "token": token,
            "purpose": purpose,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "at": _now().isoformat(),
        }
        return json.dumps(body).encode()

    def _acquire(self, version: str, purpose: str, *, stale_after_s: float | None) -> _Claim | None:
        """The version's claim, or None if someone else holds one that is live.

        ``stale_after_s``: a claim not refreshed for this long is taken over (by compare-and-swap,
        so one taker wins); None: never take over.
        """
        key = self._claim_key(version)
        token = secrets.token_hex(16)
        for _ in range(3):
            try:
                etag = self.store.put_bytes(key, self._claim_body(token, purpose), if_absent=True)
                return _Claim(key, token, purpose, etag)
            except PreconditionFailed:
                pass
            if stale_after_s is None:
                return None
            info = self.store.stat(key)
            if info is None:
                continue  # released meanwhile: try to create it again
            if _now() - info.last_modified < timedelta(seconds=stale_after_s):
                return None
            try:  # compare-and-swap on the stale claim: one taker wins
                etag = self.store.put_bytes(
                    key, self._claim_body(token, purpose), if_match=info.etag
                )
            except (PreconditionFailed, ObjectNotFound):
                continue
            log.info("registry.claim_taken_over key=%s purpose=%s", key, purpose)
            return _Claim(key, token, purpose, etag)
        return None

    def _refresh(self, claim: _Claim, version: str) -> None:
        """Heartbeat and fence: fails if the claim was taken over (we were presumed dead)."""
        try:
            claim.etag = self.store.put_bytes(
                claim.key, self._claim_body(claim.token, claim.purpose), if_match=claim.etag
            )
        except (PreconditionFailed, ObjectNotFound) as exc:
            raise PublishInProgress(
                f"the {claim.purpose} of {self._where(version)} lost its claim (a cleanup "
                f"took it over after {self.grace_period_s:.0f} s without progress); "
                "nothing was published: try again"
            ) from exc

    def _release(self, claim: _Claim) -> None:
        with contextlib.suppress(RegistryError):
            data, _ = self.store.get_bytes(claim.key)
            if json.loads(data).get("token") == claim.token:
                self.store.delete([claim.key])

    def _claim_holder(self, version: str) -> str:
        try:
            body = json.loads(self.store.read(self._claim_key(version)))
            return (
                f"a {body.get('purpose', '?')} by {body.get('host', '?')} pid "
                f"{body.get('pid', '?')} (last seen {body.get('at', '?')})"
            )
        except (RegistryError, ValueError, AttributeError):
            return "another process"

    # -- reading ----------------------------------------------------------------------------------

    def exists(self, version: str) -> bool:
        """A version exists iff its manifest does."""
        return self.store.stat(self._manifest_key(check_version_id(version))) is not None

    def _read_manifest(self, version: str) -> tuple[Manifest, bytes]:
        key = self._manifest_key(version)
        try:
            data, _ = self.store.get_bytes(key)
        except ObjectNotFound:
            raise VersionNotFound(
                f"no version {version} of model {self.model} in {self.store.location} "
                "(`dcgan models list` shows the versions there are)"
            ) from None
        manifest = Manifest.from_json(data, f"{key} in {self.store.location}")
        if manifest.model_name != self.model or manifest.version != version:
            raise RegistryError(
                f"{key} in {self.store.location} describes {manifest.model_name} version "
                f"{manifest.version}: it was copied or edited; the version cannot be used"
            )
        return manifest, data

    def _read_alias(self, alias: str) -> tuple[AliasRecord, str] | None:
        key = self._alias_key(alias)
        try:
            data, etag = self.store.get_bytes(key)
        except ObjectNotFound:
            return None
        return AliasRecord.from_json(data, f"{key} in {self.store.location}"), etag

    def get_alias(self, alias: str) -> AliasRecord:
        found = self._read_alias(check_alias(alias))
        if found is None:
            raise AliasNotFound(
                f"alias {alias!r} of model {self.model} is not set in {self.store.location}"
                + (" (promote a version first)" if alias == PRODUCTION else "")
            )
        return found[0]

    def aliases(self) -> dict[str, AliasRecord]:
        """Every alias of the model; an unreadable one raises (it must be repaired, not hidden)."""
        prefix = f"{self.model}/aliases/"
        found: dict[str, AliasRecord] = {}
        for info in self.store.list(prefix):
            name = info.key[len(prefix) :]
            if "/" in name or not name.endswith(".json") or not _ALIAS.match(name[:-5]):
                continue
            record = self._read_alias(name[:-5])
            if record is not None:
                found[name[:-5]] = record[0]
        return dict(sorted(found.items()))

    def resolve(self, ref: str) -> str:
        """An alias (looked up first) or a version id -> an existing version id."""
        if _ALIAS.match(ref):
            found = self._read_alias(ref)
            if found is not None:
                version = found[0].version
                if not self.exists(version):
                    raise VersionNotFound(
                        f"alias {ref!r} of {self._where()} points to version {version}, which "
                        "does not exist: promote an existing version"
                    )
                return version
        if not _ID.match(ref) or ".." in ref:
            raise InvalidName(f"{ref!r} is neither an alias nor a valid version id")
        if not self.exists(ref):
            raise VersionNotFound(
                f"no version or alias {ref!r} of model {self.model} in {self.store.location} "
                "(`dcgan models list` shows what there is)"
            )
        return ref

    def show(self, ref: str) -> Manifest:
        return self._read_manifest(self.resolve(ref))[0]

    def list_versions(self) -> list[VersionInfo]:
        """Published versions (those with a manifest), oldest first, with metrics and aliases."""
        prefix = self._versions_prefix
        versions = sorted(
            info.key[len(prefix) :].split("/")[0]
            for info in self.store.list(prefix)
            if info.key[len(prefix) :].split("/")[1:] == [MANIFEST_NAME]
        )
        by_version: dict[str, list[str]] = {}
        for alias, record in self.aliases().items():
            by_version.setdefault(record.version, []).append(alias)

        def load(version: str) -> VersionInfo | None:
            try:
                manifest, _ = self._read_manifest(version)
            except VersionNotFound:  # deleted meanwhile
                return None
            except RegistryError as exc:
                log.warning("registry.bad_manifest version=%s error=%s", version, exc)
                return None
            return VersionInfo(
                version=version,
                created_at=manifest.created_at,
                metrics=dict(manifest.metrics),
                aliases=by_version.get(version, []),
                size=sum(entry.size for entry in manifest.files.values()),
                manifest=manifest,
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            rows = [row for row in pool.map(load, versions) if row is not None]
        return sorted(rows, key=lambda row: (row.created_at, row.version))

    # -- publishing -------------------------------------------------------------------------------

    def publish(
        self,
        files: Mapping[str, Path | str],
        *,
        version: str | None = None,
        signature: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        training_config: Mapping[str, Any] | None = None,
        dataset_md5: Mapping[str, str] | None = None,
        code_version: str | None = None,
        library_versions: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        move_latest: bool = True,
        on_file_uploaded: Callable[[str, int], None] | None = None,
    ) -> Manifest:
        """Upload ``files`` ({name in the version: local path}) as a new immutable version.

        Files go first, the manifest last; then ``latest`` moves to the version (unless a newer
        version got there first). Raises VersionExists for a taken id, PublishInProgress while
        another process publishes the same id.
        """
        version = check_version_id(new_version_id() if version is None else version)
        if not files:
            raise RegistryError(f"nothing to publish for {self._where(version)}: no files given")
        entries: dict[str, FileEntry] = {}
        paths: dict[str, Path] = {}
        for name, raw_path in sorted(files.items()):
            check_file_name(name)
            path = Path(raw_path)
            if not path.is_file():
                raise RegistryError(f"cannot publish {name}: {path} is not a readable file")
            sha256, size = sha256_file(path)
            entries[name] = FileEntry(sha256=sha256, size=size)
            paths[name] = path

        self.store.ensure_ready(for_write=True)
        manifest_key = self._manifest_key(version)
        if self.store.stat(manifest_key) is not None:
            raise self._exists(version)
        if _ALIAS.match(version) and self._read_alias(version) is not None:
            raise InvalidName(f"version id {version!r} is an alias name of {self._where()}")
        claim = self._acquire(version, "publish", stale_after_s=None)
        if claim is None:
            if self.store.stat(manifest_key) is not None:
                raise self._exists(version)
            raise PublishInProgress(
                f"{self._where(version)} is claimed by {self._claim_holder(version)}; if that "
                "process is gone, `cleanup` frees the id once its leftovers are older than "
                f"{self.grace_period_s:.0f} s, or publish under another version id"
            )
        published = claim_lost = False
        uploaded: list[str] = []
        try:
            # A publisher that finished between our first check and our claim wrote its manifest
            # before it released the claim: this check sees it.
            if self.store.stat(manifest_key) is not None:
                raise self._exists(version)
            started = time.monotonic()
            for name, path in paths.items():
                key = self._file_key(version, name)
                uploaded.append(key)
                self.store.put_file(key, path)
                try:
                    self._refresh(claim, version)
                except PublishInProgress:
                    claim_lost = True
                    raise
                log.info("registry.uploaded %s size=%d", key, entries[name].size)
                if on_file_uploaded is not None:
                    on_file_uploaded(name, entries[name].size)
            for name, entry in entries.items():
                info = self.store.stat(self._file_key(version, name))
                if info is None or info.size != entry.size:
                    raise RegistryError(
                        f"{name} of {self._where(version)} is "
                        f"{'missing' if info is None else f'{info.size} bytes'} after upload, "
                        f"expected {entry.size}: nothing was published, try again"
                    )
            manifest = Manifest(
                model_name=self.model,
                version=version,
                created_at=_now(),
                files=entries,
                signature=dict(signature or {}),
                metrics=dict(metrics or {}),
                training_config=dict(training_config or {}),
                dataset_md5=dict(dataset_md5 or {}),
                code_version=code_version,
                library_versions=dict(library_versions or {}),
                extra=dict(extra or {}),
            )
            try:
                self._refresh(claim, version)  # fence: still ours right before the manifest
            except PublishInProgress:
                claim_lost = True
                raise
            try:
                self.store.put_bytes(manifest_key, manifest.to_json(), if_absent=True)
            except PreconditionFailed:
                uploaded.clear()  # the files now belong to whoever wrote that manifest
                raise self._exists(version) from None
            published = True
        finally:
            # Without the claim, the keys may already be someone else's: leave them to cleanup.
            if not published and not claim_lost:
                with contextlib.suppress(Exception):
                    self.store.delete(uploaded)
            if not claim_lost:
                self._release(claim)
        log.info(
            "registry.published model=%s version=%s files=%d bytes=%d seconds=%.2f store=%s",
            self.model,
            version,
            len(entries),
            sum(e.size for e in entries.values()),
            time.monotonic() - started,
            self.store.location,
        )
        if move_latest:
            self._move_latest(version, manifest.created_at)
        return manifest

    def _exists(self, version: str) -> VersionExists:
        return VersionExists(
            f"{self._where(version)} already exists and versions are immutable: "
            "publish under another version id (or leave it out to get a new one)"
        )

    def _move_latest(self, version: str, created_at: datetime) -> None:
        def choose(current: AliasRecord | None) -> str | None:
            if current is None or current.version == version:
                return version
            try:
                other, _ = self._read_manifest(current.version)
            except RegistryError:
                return version  # points at nothing usable: take it
            return version if other.created_at <= created_at else None

        self._update_alias(LATEST, choose)

    # -- aliases ----------------------------------------------------------------------------------

    def _update_alias(
        self, alias: str, choose: Callable[[AliasRecord | None], str | None]
    ) -> AliasRecord | None:
        """Compare-and-swap loop: ``choose(current)`` gives the new target (None: leave it)."""
        key = self._alias_key(alias)
        for attempt in range(self.cas_attempts):
            etag: str | None
            try:
                data, etag = self.store.get_bytes(key)
            except ObjectNotFound:
                current, etag = None, None
            else:
                try:
                    current = AliasRecord.from_json(data, key)
                except RegistryError as exc:  # unreadable: overwrite it (still by CAS)
                    log.warning("registry.alias_repaired alias=%s error=%s", alias, exc)
                    current = None
            target = choose(current)
            if target is None or (current is not None and current.version == target):
                return current
            record = AliasRecord(
                version=target, previous=current.version if current else None, updated_at=_now()
            )
            try:
                if etag is None:
                    self.store.put_bytes(key, record.to_json(), if_absent=True)
                else:
                    self.store.put_bytes(key, record.to_json(), if_match=etag)
            except (PreconditionFailed, ObjectNotFound):
                time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))  # jittered backoff
                continue
            log.info(
                "registry.alias_moved model=%s alias=%s version=%s previous=%s",
                self.model,
                alias,
                record.version,
                record.previous,
            )
            return record
        raise ConcurrentUpdate(
            f"alias {alias!r} of {self._where()} kept changing during {self.cas_attempts} "
            "attempts to move it: try again"
        )

    def set_alias(self, alias: str, ref: str) -> AliasRecord:
        """Point ``alias`` at a version (or at what another alias points to)."""
        check_alias(alias)
        version = self.resolve(ref)
        record = self._update_alias(alias, lambda _current: version)
        assert record is not None
        return record

    def promote(self, ref: str, alias: str = PRODUCTION) -> AliasRecord:
        """Point ``alias`` at a version; the replaced target becomes ``previous`` for rollback."""
        return self.set_alias(alias, ref)

    def rollback(self, alias: str = PRODUCTION) -> AliasRecord:
        """Point ``alias`` back at its previous target (a second rollback undoes the first)."""
        check_alias(alias)

        def choose(current: AliasRecord | None) -> str:
            if current is None:
                raise AliasNotFound(f"alias {alias!r} of {self._where()} is not set")
            if current.previous is None:
                raise RegistryError(
                    f"alias {alias!r} of {self._where()} has no previous version to roll back to"
                )
            if not self.exists(current.previous):
                raise VersionNotFound(
                    f"cannot roll back {alias!r} of {self._where()}: its previous version "
                    f"{current.previous} was deleted; promote another version instead"
                )
            return current.previous

        record = self._update_alias(alias, choose)
        assert record is not None
        return record

    # -- pulling ----------------------------------------------------------------------------------

    def pull(
        self, ref: str, cache_dir: Path | str, *, files: Collection[str] | None = None
    ) -> Path:
        """A local directory holding the version's files and manifest, every sha256 verified.

        ``files``: only these of the version's files (a server needs its generator, not the
        training checkpoint); None: all of them. ``cache_dir/<model>/<version>/`` is reused when
        it matches the store's manifest. Files are downloaded into a hidden staging directory
        that is renamed into place only once all of them verified, so a directory under that
        name is always complete. A failure to write the cache is a CacheError.
        """
        version = self.resolve(ref)
        manifest, manifest_bytes = self._read_manifest(version)
        names = sorted(manifest.files if files is None else files)
        for name in names:
            check_file_name(name)  # the manifest's names become local paths
            if name not in manifest.files:
                raise RegistryError(
                    f"{self._where(version)} has no file {name!r} "
                    f"(it has {', '.join(sorted(manifest.files)) or 'none'})"
                )
        cache = ModelCache(cache_dir, self.model)
        if cache.holds(version, manifest_bytes, names):
            log.info("registry.pull_cached model=%s version=%s", self.model, version)
            cache.touch(version)
            return cache.path(version)
        started = time.monotonic()
        with cache.staging(version) as staging:
            for name in names:
                self._download(cache, version, name, manifest.files[name], staging / name)
            dest = cache.install(staging, version, manifest_bytes, names)
        log.info(
            "registry.pulled model=%s version=%s files=%d dir=%s seconds=%.2f",
            self.model,
            version,
            len(names),
            dest,
            time.monotonic() - started,
        )
        return dest

    def _download(
        self, cache: ModelCache, version: str, name: str, entry: FileEntry, target: Path
    ) -> None:
        try:
            actual, size = cache.write_file(
                target, self.store.iter_chunks(self._file_key(version, name))
            )
        except ObjectNotFound:
            raise RegistryError(
                f"{name} of {self._where(version)} is listed in the manifest but missing from "
                "the store: the version is damaged (or was deleted meanwhile)"
            ) from None
        if actual != entry.sha256 or size != entry.size:
            raise IntegrityError(
                name,
                entry.sha256,
                actual,
                where=self._where(version),
                expected_size=entry.size,
                actual_size=size,
            )

    # -- deleting and cleaning up -----------------------------------------------------------------

    def delete(self, version: str) -> None:
        """Delete a version no alias points to (manifest first, so it vanishes at once)."""
        check_version_id(version)
        self._read_manifest(version)  # VersionNotFound, with a hint
        users = [alias for alias, record in self.aliases().items() if record.version == version]
        if users:
            raise VersionInUse(version, users)
        claim = self._acquire(version, "delete", stale_after_s=self.grace_period_s)
        if claim is None:
            raise PublishInProgress(
                f"{self._where(version)} is claimed by {self._claim_holder(version)}: try again"
            )
        try:
            self.store.delete([self._manifest_key(version)])
            keys = [
                info.key
                for info in self.store.list(self._version_prefix(version))
                if info.key != claim.key
            ]
            self.store.delete(keys)
        finally:
            self._release(claim)
        log.info("registry.deleted model=%s version=%s", self.model, version)

    def cleanup(self, grace_period_s: float | None = None) -> list[str]:
        """Remove what interrupted publishes left: objects of versions without a manifest whose
        newest object is older than the grace period (younger ones may be a publish in progress),
        and stale claims of published versions. Returns the version ids it cleaned."""
        grace = self.grace_period_s if grace_period_s is None else grace_period_s
        cutoff = _now() - timedelta(seconds=grace)
        prefix = self._versions_prefix
        groups: dict[str, list[ObjectInfo]] = {}
        for info in self.store.list(prefix):
            groups.setdefault(info.key[len(prefix) :].split("/")[0], []).append(info)
        cleaned: list[str] = []
        for version, infos in sorted(groups.items()):
            names = {info.key[len(self._version_prefix(version)) :] for info in infos}
            if max(info.last_modified for info in infos) > cutoff:
                continue  # recent activity: a publish (or delete) may be running
            if not _ID.match(version):
                continue  # not ours to judge
            if MANIFEST_NAME in names and CLAIM_NAME not in names:
                continue  # a published version: nothing left over
            claim = self._acquire(version, "cleanup", stale_after_s=grace)
            if claim is None:
                continue
            try:  # a published version loses only its stale claim (released below)
                if MANIFEST_NAME not in names:
                    # re-list under the claim: nothing can be added to the version meanwhile
                    keys = [
                        info.key
                        for info in self.store.list(self._version_prefix(version))
                        if info.key != claim.key
                    ]
                    if self.store.stat(self._manifest_key(version)) is None:
                        self.store.delete(keys)
                        cleaned.append(version)
            finally:
                self._release(claim)
        if cleaned:
            log.info("registry.cleaned model=%s versions=%s", self.model, ",".join(cleaned))
        return cleaned
