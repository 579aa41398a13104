"""Object stores for the registry: the interface. Implementations: s3_store.py (S3 through the
minio SDK) and local_store.py (a directory); settings.py opens the one a URI names.

Both give the same semantics, which is what the registry's guarantees rest on:

- every write of an object is atomic: a reader sees the old object, the new one, or none, never a
  part (S3: a PUT replaces the whole object; local: temporary file + rename);
- ``put_bytes(..., if_absent=True)`` creates an object only if the key is free, and
  ``put_bytes(..., if_match=etag)`` replaces it only if it has not changed since it was read
  (S3: ``If-None-Match: *`` / ``If-Match`` conditional PUT; local: ``link()`` / a directory lock);
- a missing bucket (or root directory) is created on the first write where that is allowed, and is
  a :class:`BucketMissing` error otherwise, and always on reads.

Keys are ``/``-separated, relative, without empty, ``.`` or ``..`` segments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from models.registry.errors import (
    InvalidName,
)

T = TypeVar("T")
CHUNK = 1 << 20
JSON = "application/json"
OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # an opaque version token: equal etags mean unchanged content
    last_modified: datetime  # UTC


def check_key(key: str) -> str:
    """Refuse keys that could escape a prefix or a root directory."""
    parts = key.split("/")
    if not key or "\\" in key or "\x00" in key or any(part in ("", ".", "..") for part in parts):
        raise InvalidName(f"invalid object key {key!r}")
    return key


class ObjectStore(ABC):
    """Where registry objects live. Implementations must keep the semantics in the module doc."""

    #: where the objects are, for messages: ``s3://bucket/prefix at host:port`` or a path
    location: str

    @abstractmethod
    def ensure_ready(self, *, for_write: bool) -> None:
        """Check the bucket (root directory) exists; create it for a write where allowed.

        Raises :class:`BucketMissing` otherwise, and StoreUnreachable / BadCredentials early.
        """

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str = OCTETS) -> None:
        """Upload a local file (any size); atomic, unconditional."""

    @abstractmethod
    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str = JSON,
    ) -> str:
        """Write a small object atomically and return its etag.

        ``if_absent``: only if no object has the key. ``if_match``: only if the object still has
        this etag. Either raises :class:`PreconditionFailed` when the condition does not hold.
        """

    @abstractmethod
    def get_bytes(self, key: str) -> tuple[bytes, str]:
        """The object's content and the etag of exactly that content; ObjectNotFound if absent."""

    @abstractmethod
    def iter_chunks(self, key: str) -> Iterator[bytes]:
        """Stream the object's content; ObjectNotFound if absent."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size, etag and time, or None if absent."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursive, in no promised order)."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete these objects; keys that do not exist are fine."""

    def read(self, key: str) -> bytes:
        return self.get_bytes(key)[0]
