"""Removing versions: a deletion, and the cleanup of what interrupted publishes left.

Both work under the version's claim (claims.py), so neither races a publish of the same id; a
deletion removes the manifest first, so the version vanishes at once and never shows half its
files. Cleanup leaves alone whatever changed within the grace period: a publish (or delete) may
still be running there.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from models.contract import MANIFEST_NAME
from models.registry.claims import Claims
from models.registry.errors import PublishInProgress
from models.registry.layout import CLAIM_NAME, Layout
from models.registry.names import is_id
from models.registry.store import ObjectInfo, ObjectStore

log = logging.getLogger("models.registry")


def _keys_besides(store: ObjectStore, layout: Layout, version: str, claim_key: str) -> list[str]:
    """Every key of the version except its claim (listed under the claim: nothing is added)."""
    return [
        info.key for info in store.list(layout.version_prefix(version)) if info.key != claim_key
    ]


def delete_version(store: ObjectStore, layout: Layout, claims: Claims, version: str) -> None:
    """Delete a published version's objects (the caller checked that no alias points to it)."""
    claim = claims.acquire(version, "delete", stale_after_s=claims.lease_s)
    if claim is None:
        raise PublishInProgress(
            f"{layout.where(store.location, version)} is claimed by {claims.holder(version)}: "
            "try again"
        )
    try:
        store.delete([layout.manifest_key(version)])
        store.delete(_keys_besides(store, layout, version, claim.key))
    finally:
        claims.release(claim)
    log.info("registry.deleted model=%s version=%s", layout.model, version)


def clean_leftovers(
    store: ObjectStore, layout: Layout, claims: Claims, grace_period_s: float
) -> list[str]:
    """Remove objects of versions without a manifest whose newest object is older than the grace
    period, and stale claims of published versions. Returns the version ids it cleaned."""
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_period_s)
    groups: dict[str, list[ObjectInfo]] = {}
    for info in store.list(layout.versions_prefix):
        groups.setdefault(layout.version_of(info.key)[0], []).append(info)
    cleaned: list[str] = []
    for version, infos in sorted(groups.items()):
        names = {layout.version_of(info.key)[1] for info in infos}
        if max(info.last_modified for info in infos) > cutoff:
            continue  # recent activity: a publish (or delete) may be running
        if not is_id(version):
            continue  # not ours to judge
        if MANIFEST_NAME in names and CLAIM_NAME not in names:
            continue  # a published version: nothing left over
        claim = claims.acquire(version, "cleanup", stale_after_s=grace_period_s)
        if claim is None:
            continue
        try:  # a published version loses only its stale claim (released below)
            if MANIFEST_NAME not in names:
                keys = _keys_besides(store, layout, version, claim.key)
                if store.stat(layout.manifest_key(version)) is None:
                    store.delete(keys)
                    cleaned.append(version)
        finally:
            claims.release(claim)
    if cleaned:
        log.info("registry.cleaned model=%s versions=%s", layout.model, ",".join(cleaned))
    return cleaned
