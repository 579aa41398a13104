"""The model registry: immutable versions, movable aliases, verified pulls (contract 3).

``ModelRegistry`` is the facade; each job has its module: names.py (what a name may be),
layout.py (which key holds what), versions.py (reading manifests, the listing), publishing.py
(hashing and uploading a version), claims.py (per-version write leases), aliases.py (alias
records and their compare-and-swap), pulling.py and cache.py (the verified local copies),
removal.py (deleting, cleaning up), store.py (S3 or a directory).

Why each guarantee holds, on both stores (see store.py for the primitives):

- A version exists iff its manifest exists; the manifest is the last write, so a reader never
  sees a version with missing files, and an interrupted publish leaves no visible version.
- Publishing an existing id fails and changes nothing: the manifest is checked before the claim,
  re-checked after it (a publisher that finished in between has written its manifest before
  releasing its claim), and finally written create-only (``If-None-Match: *`` / ``link()``).
- Alias moves are one atomic object write made with compare-and-swap (aliases.py).
- A version's files are written and deleted only under its claim (claims.py); a claim left behind
  by a killed process is taken over by :meth:`ModelRegistry.cleanup` after the grace period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.contract import LATEST, PRODUCTION
from models.registry.aliases import Aliases, AliasRecord
from models.registry.cache import ModelCache
from models.registry.claims import Claims
from models.registry.errors import (
    AliasNotFound,
    InvalidName,
    RegistryError,
    VersionInUse,
    VersionNotFound,
)
from models.registry.layout import Layout
from models.registry.manifest import FileEntry, Manifest, StoredManifest
from models.registry.names import (
    check_alias,
    check_model_name,
    check_version_id,
    is_alias,
    is_id,
    new_version_id,
)
from models.registry.publishing import hash_files, upload_version, version_exists
from models.registry.pulling import pull_version
from models.registry.removal import clean_leftovers, delete_version
from models.registry.signing import ManifestSigner, ManifestVerifier
from models.registry.store import ObjectStore
from models.registry.versions import VersionInfo, Versions

log = logging.getLogger("models.registry")

DEFAULT_GRACE_S = 3600.0
DEFAULT_LEASE_S = 600.0


def _now() -> datetime:
    return datetime.now(UTC)


class ModelRegistry:
    """Versions and aliases of one model in one store.

    ``grace_period_s``: how old the leftovers of an unfinished publish (and a claim) must be
    before :meth:`cleanup` treats the process that wrote them as dead; ``claim_lease_s``: how
    long a version's claim lives without a refresh before another publish or delete takes it
    over (claims.py). ``signer`` signs what
    this registry publishes; with a ``verifier``, a version is used (shown, resolved, pulled)
    only when its manifest carries a valid signature by a trusted key (signing.py).
    """

    def __init__(
        self,
        store: ObjectStore,
        model_name: str,
        *,
        grace_period_s: float = DEFAULT_GRACE_S,
        claim_lease_s: float = DEFAULT_LEASE_S,
        cas_attempts: int = 100,
        signer: ManifestSigner | None = None,
        verifier: ManifestVerifier | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.verifier = verifier
        self._cas_attempts = cas_attempts
        self._warned_unverified = False
        self.model = check_model_name(model_name)
        self.grace_period_s = grace_period_s
        self.layout = Layout(self.model)
        self._claims = Claims(store, self.layout, claim_lease_s)
        self._aliases = Aliases(store, self.layout, cas_attempts)
        self._versions = Versions(store, self.layout, verifier)

    def for_model(self, model_name: str) -> ModelRegistry:
        """Another model's registry in the same store, with the same keys and timings (a server
        that serves several models opens one store)."""
        return ModelRegistry(
            self.store,
            model_name,
            grace_period_s=self.grace_period_s,
            claim_lease_s=self._claims.lease_s,
            cas_attempts=self._cas_attempts,
            signer=self.signer,
            verifier=self.verifier,
        )

    def _where(self, version: str | None = None) -> str:
        return self.layout.where(self.store.location, version)

    # -- reading ----------------------------------------------------------------------------------

    def exists(self, version: str) -> bool:
        """A version exists iff its manifest does."""
        return self._versions.exists(version)

    def _read_manifest(self, version: str, *, verify: bool = True) -> StoredManifest:
        """The version's manifest; with a verifier (and ``verify``), only a validly signed one."""
        return self._versions.read(version, verify=verify)

    def _warn_unverified(self) -> None:
        """Once per registry, when a version's files are used without a verifier."""
        if self.verifier is None and not self._warned_unverified:
            self._warned_unverified = True
            log.warning(
                "registry.unverified %s: versions are used without checking their signature; "
                "set DCGAN_REGISTRY_TRUSTED_KEYS to the publisher's public key(s)",
                self._where(),
            )

    def verify_cached(self, version: str, cache_dir: Path | str) -> tuple[Manifest, bytes]:
        """A cached version's manifest, its signature verified again (with a verifier): what a
        server may serve from its cache while the registry cannot be asked."""
        cache = ModelCache(cache_dir, self.model)
        manifest, data = cache.cached_manifest(check_version_id(version))
        if self.verifier is not None:
            origin = f"{version} in the cache at {cache.base}"
            self.verifier.verify(data, cache.cached_signature(version), origin)
        return manifest, data

    def get_alias(self, alias: str) -> AliasRecord:
        found = self._aliases.read(check_alias(alias))
        if found is None:
            raise AliasNotFound(
                f"alias {alias!r} of model {self.model} is not set in {self.store.location}"
                + (" (promote a version first)" if alias == PRODUCTION else "")
            )
        return found[0]

    def aliases(self) -> dict[str, AliasRecord]:
        """Every alias of the model; an unreadable one raises (it must be repaired, not hidden)."""
        return self._aliases.all()

    def resolve(self, ref: str) -> str:
        """An alias (looked up first) or a version id -> an existing version id."""
        if is_alias(ref):
            found = self._aliases.read(ref)
            if found is not None:
                version = found[0].version
                if not self.exists(version):
                    raise VersionNotFound(
                        f"alias {ref!r} of {self._where()} points to version {version}, which "
                        "does not exist: promote an existing version"
                    )
                return version
        if not is_id(ref):
            raise InvalidName(f"{ref!r} is neither an alias nor a valid version id")
        if not self.exists(ref):
            raise VersionNotFound(
                f"no version or alias {ref!r} of model {self.model} in {self.store.location} "
                "(`dcgan models list` shows what there is)"
            )
        return ref

    def show(self, ref: str) -> Manifest:
        return self._read_manifest(self.resolve(ref)).manifest

    def list_versions(self) -> list[VersionInfo]:
        """Published versions (those with a manifest), oldest first, with metrics and aliases."""
        versions = self._versions.published()
        by_version: dict[str, list[str]] = {}
        for alias, record in self.aliases().items():
            by_version.setdefault(record.version, []).append(alias)
        return self._versions.rows(versions, by_version)

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
        hashed: Mapping[str, FileEntry] | None = None,
    ) -> Manifest:
        """Upload ``files`` ({name in the version: local path}) as a new immutable version.

        Files go first, the manifest last; then ``latest`` moves to the version (unless a newer
        version got there first). ``hashed``: the entries of files the caller already hashed
        (an export's), so each file is hashed once. Raises VersionExists for a taken id,
        PublishInProgress while another process publishes the same id.
        """
        version = check_version_id(new_version_id() if version is None else version)
        if not files:
            raise RegistryError(f"nothing to publish for {self._where(version)}: no files given")
        entries, paths = hash_files(files, hashed or {})

        self.store.ensure_ready(for_write=True)
        if self.store.stat(self.layout.manifest_key(version)) is not None:
            raise version_exists(self._where(version))
        if is_alias(version) and self._aliases.read(version) is not None:
            raise InvalidName(f"version id {version!r} is an alias name of {self._where()}")
        draft = Manifest(
            model_name=self.model,
            version=version,
            created_at=_now(),  # set again right before the manifest is written
            files=entries,
            signature=dict(signature or {}),
            metrics=dict(metrics or {}),
            training_config=dict(training_config or {}),
            dataset_md5=dict(dataset_md5 or {}),
            code_version=code_version,
            library_versions=dict(library_versions or {}),
            extra=dict(extra or {}),
        )
        manifest = upload_version(
            self.store, self.layout, self._claims, draft, paths, on_file_uploaded, self.signer
        )
        if move_latest:
            self._move_latest(version, manifest.created_at)
        return manifest

    def _move_latest(self, version: str, created_at: datetime) -> None:
        def choose(current: AliasRecord | None) -> str | None:
            if current is None or current.version == version:
                return version
            try:
                other = self._read_manifest(current.version).manifest
            except RegistryError:
                return version  # points at nothing usable: take it
            return version if other.created_at <= created_at else None

        self._aliases.update(LATEST, choose)

    # -- aliases ----------------------------------------------------------------------------------

    def set_alias(self, alias: str, ref: str, *, allow_older: bool = True) -> AliasRecord:
        """Point ``alias`` at a version (or at what another alias points to). With
        ``allow_older=False``, a version published before the alias's current one is refused:
        moving back must be asked for, or anyone who may write aliases could quietly restore
        an old (validly signed) version."""
        check_alias(alias)
        if self.exists(alias):
            raise InvalidName(
                f"alias {alias!r} is a version id of {self._where()}: it would hide that version"
            )
        version = self.resolve(ref)
        target = None
        if self.verifier is not None or not allow_older:
            # Never point an alias at a version no server would use (verified, with a verifier).
            target = self._read_manifest(version).manifest
        forward_target = None if allow_older else target

        def choose(current: AliasRecord | None) -> str:
            if forward_target is not None and current is not None and current.version != version:
                self._refuse_older(alias, current.version, forward_target)
            return version

        record = self._aliases.update(alias, choose)
        assert record is not None
        return record

    def _refuse_older(self, alias: str, current: str, target: Manifest) -> None:
        try:
            now = self._read_manifest(current).manifest
        except RegistryError:
            return  # it points at nothing usable (deleted, damaged, unsigned): any is better
        if target.created_at < now.created_at:
            raise RegistryError(
                f"{target.version} (published {target.created_at:%Y-%m-%d %H:%M:%S} UTC) is "
                f"older than {current} ({now.created_at:%Y-%m-%d %H:%M:%S} UTC), which "
                f"{alias!r} of {self._where()} points to: to move it back on purpose, "
                f"`dcgan models promote {target.version} --alias {alias} --rollback` (or "
                "`dcgan models rollback` to its previous version)"
            )

    def promote(
        self, ref: str, alias: str = PRODUCTION, *, allow_older: bool = True
    ) -> AliasRecord:
        """Point ``alias`` at a version; the replaced target becomes ``previous`` for rollback.
        ``allow_older=False``: refuse a version older than the current one (see set_alias)."""
        return self.set_alias(alias, ref, allow_older=allow_older)

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
            if self.verifier is not None:  # as set_alias: only to a version servers would use
                self._read_manifest(current.previous)
            return current.previous

        record = self._aliases.update(alias, choose)
        assert record is not None
        return record

    # -- pulling ----------------------------------------------------------------------------------

    def pull(
        self,
        ref: str,
        cache_dir: Path | str,
        *,
        files: Collection[str] | None = None,
        optional: Collection[str] = (),
    ) -> Path:
        """A local directory holding the version's files and manifest, every sha256 verified.

        ``files``: only these of the version's files (a server needs its generator, not the
        training checkpoint); None: all of them; ``optional``: these too where the version has
        them (the evaluation classifier). ``cache_dir/<model>/<version>/`` is reused when it
        matches the store's manifest. Files are downloaded into a hidden staging directory that
        is renamed into place only once all of them verified, so a directory under that name is
        always complete. A failure to write the cache is a CacheError.
        """
        version = self.resolve(ref)
        stored = self._read_manifest(version)
        names = stored.manifest.select(files, optional, self._where(version))
        dest = pull_version(
            self.store, self.layout, stored, names, ModelCache(cache_dir, self.model)
        )
        self._warn_unverified()
        return dest

    # -- deleting and cleaning up -----------------------------------------------------------------

    def delete(self, version: str) -> None:
        """Delete a version no alias points to (manifest first, so it vanishes at once)."""
        check_version_id(version)
        self._read_manifest(version, verify=False)  # VersionNotFound, with a hint
        users = [alias for alias, record in self.aliases().items() if record.version == version]
        if users:
            raise VersionInUse(version, users)
        delete_version(self.store, self.layout, self._claims, version)

    def cleanup(self, grace_period_s: float | None = None) -> list[str]:
        """Remove what interrupted publishes left: objects of versions without a manifest whose
        newest object is older than the grace period (younger ones may be a publish in progress),
        and stale claims of published versions. Returns the version ids it cleaned."""
        grace = self.grace_period_s if grace_period_s is None else grace_period_s
        return clean_leftovers(self.store, self.layout, self._claims, grace)
