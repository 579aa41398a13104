"""Per-version write leases: a publish, delete or cleanup holds ``<version>/.claim.json`` while it
works, so two writers never touch one version's files at the same time.

A claim is created only if absent (``If-None-Match: *`` / ``link()``), refreshed by
compare-and-swap on its etag (the refresh is also a fence: it fails once someone else took the
claim over), and removed at the end. A claim left by a killed process is taken over, by
compare-and-swap so one taker wins, once it has not been refreshed for its lease (a publish
refreshes it after every file, so the lease bounds one file's upload, not the whole publish).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from models.registry.errors import (
    ObjectNotFound,
    PreconditionFailed,
    PublishInProgress,
    RegistryError,
)
from models.registry.layout import Layout
from models.registry.store import ObjectStore

log = logging.getLogger("models.registry")


@dataclass
class Claim:
    key: str
    token: str
    purpose: str
    etag: str
    taken_over: bool = False  # from a writer that stopped refreshing it (presumed dead)


class Claims:
    """The claims of one model's versions in one store."""

    def __init__(self, store: ObjectStore, layout: Layout, lease_s: float) -> None:
        self.store = store
        self.layout = layout
        self.lease_s = lease_s

    @staticmethod
    def _body(token: str, purpose: str) -> bytes:
        body = {
            "token": token,
            "purpose": purpose,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "at": datetime.now(UTC).isoformat(),
        }
        return json.dumps(body).encode()

    def acquire(self, version: str, purpose: str, *, stale_after_s: float | None) -> Claim | None:
        """The version's claim, or None if someone else holds one that is live.

        ``stale_after_s``: a claim not refreshed for this long is taken over (by compare-and-swap,
        so one taker wins); None: never take over.
        """
        key = self.layout.claim_key(version)
        token = secrets.token_hex(16)
        for _ in range(3):
            try:
                etag = self.store.put_bytes(key, self._body(token, purpose), if_absent=True)
                return Claim(key, token, purpose, etag)
            except PreconditionFailed:
                pass
            if stale_after_s is None:
                return None
            info = self.store.stat(key)
            if info is None:
                continue  # released meanwhile: try to create it again
            if datetime.now(UTC) - info.last_modified < timedelta(seconds=stale_after_s):
                return None
            try:  # compare-and-swap on the stale claim: one taker wins
                etag = self.store.put_bytes(key, self._body(token, purpose), if_match=info.etag)
            except (PreconditionFailed, ObjectNotFound):
                continue
            log.info("registry.claim_taken_over key=%s purpose=%s", key, purpose)
            return Claim(key, token, purpose, etag, taken_over=True)
        return None

    def refresh(self, claim: Claim, version: str) -> None:
        """Heartbeat and fence: fails if the claim was taken over (we were presumed dead)."""
        try:
            claim.etag = self.store.put_bytes(
                claim.key, self._body(claim.token, claim.purpose), if_match=claim.etag
            )
        except (PreconditionFailed, ObjectNotFound) as exc:
            raise PublishInProgress(
                f"the {claim.purpose} of {self.layout.where(self.store.location, version)} lost "
                f"its claim (another writer took it over after {self.lease_s:.0f} s without a "
                "refresh); nothing was published: try again"
            ) from exc

    def release(self, claim: Claim) -> None:
        with contextlib.suppress(RegistryError):
            data, _ = self.store.get_bytes(claim.key)
            if json.loads(data).get("token") == claim.token:
                self.store.delete([claim.key])

    def holder(self, version: str) -> str:
        """Who holds the version's claim, for messages."""
        try:
            body = json.loads(self.store.read(self.layout.claim_key(version)))
            return (
                f"a {body.get('purpose', '?')} by {body.get('host', '?')} pid "
                f"{body.get('pid', '?')} (last seen {body.get('at', '?')})"
            )
        except (RegistryError, ValueError, AttributeError):
            return "another process"
