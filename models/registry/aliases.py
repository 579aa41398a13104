"""Aliases: movable names for versions, each one object ``<model>/aliases/<alias>.json``.

A move is one atomic object write made with compare-and-swap on the alias's etag (``If-Match`` /
a directory lock), so concurrent moves never corrupt an alias nor lose the ``previous`` that
rollback returns to.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from models.registry.errors import (
    ConcurrentUpdate,
    ObjectNotFound,
    PreconditionFailed,
    RegistryError,
)
from models.registry.layout import Layout
from models.registry.names import check_version_id, is_alias
from models.registry.store import ObjectStore

log = logging.getLogger("models.registry")

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


class Aliases:
    """The aliases of one model in one store."""

    def __init__(self, store: ObjectStore, layout: Layout, cas_attempts: int) -> None:
        self.store = store
        self.layout = layout
        self.cas_attempts = cas_attempts

    def read(self, alias: str) -> tuple[AliasRecord, str] | None:
        """(record, etag), or None when the alias is not set."""
        key = self.layout.alias_key(alias)
        try:
            data, etag = self.store.get_bytes(key)
        except ObjectNotFound:
            return None
        return AliasRecord.from_json(data, f"{key} in {self.store.location}"), etag

    def all(self) -> dict[str, AliasRecord]:
        """Every alias; an unreadable one raises (it must be repaired, not hidden)."""
        prefix = self.layout.aliases_prefix
        found: dict[str, AliasRecord] = {}
        for info in self.store.list(prefix):
            name = info.key[len(prefix) :]
            if "/" in name or not name.endswith(".json") or not is_alias(name[:-5]):
                continue
            record = self.read(name[:-5])
            if record is not None:
                found[name[:-5]] = record[0]
        return dict(sorted(found.items()))

    def update(
        self, alias: str, choose: Callable[[AliasRecord | None], str | None]
    ) -> AliasRecord | None:
        """Compare-and-swap loop: ``choose(current)`` gives the new target (None: leave it)."""
        key = self.layout.alias_key(alias)
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
                self.layout.model,
                alias,
                record.version,
                record.previous,
            )
            return record
        raise ConcurrentUpdate(
            f"alias {alias!r} of {self.layout.where(self.store.location)} kept changing during "
            f"{self.cas_attempts} attempts to move it: try again"
        )
