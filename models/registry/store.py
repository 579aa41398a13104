"""Object stores for the registry: one small interface, an S3 and a local-directory implementation.

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

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name

from models.registry.errors import (
    BadCredentials,
    BucketMissing,
    InvalidName,
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
    StoreUnreachable,
)
from models.s3 import S3Settings, make_client

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


# --- S3 ------------------------------------------------------------------------------------------

_CREDENTIAL_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")


class S3Store(ObjectStore):
    """Objects in an S3 bucket (MinIO, AWS, SeaweedFS, ...) through the minio SDK.

    Conditional writes use the ``If-None-Match`` / ``If-Match`` PUT preconditions (AWS S3 since
    2024, MinIO, SeaweedFS). minio-py 7.2 has no public argument for them (``put_object`` turns
    unknown headers into ``x-amz-meta-*``), so the single-part ``Minio._put_object`` is used for
    these small objects; see :meth:`_conditional_put`.
    """

    def __init__(
        self,
        bucket: str,
        settings: S3Settings | None = None,
        *,
        prefix: str = "",
        create_bucket: bool = True,
        client: Minio | None = None,
    ) -> None:
        self.settings = settings or S3Settings()
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            raise InvalidName(f"invalid S3 bucket name {bucket!r}: {exc}") from exc
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if self.prefix:
            check_key(self.prefix.rstrip("/"))
        self.bucket = bucket
        self.create_bucket = create_bucket
        try:
            self.client = client or make_client(self.settings)
        except ValueError as exc:  # e.g. an access key without a secret key
            raise StoreError(f"S3 settings for {self.settings.endpoint}: {exc}") from exc
        if not callable(getattr(self.client, "_put_object", None)):
            raise StoreError("this minio SDK has no Minio._put_object: pin minio>=7.2,<8")
        self.endpoint = self.settings.endpoint
        self.location = f"s3://{bucket}/{self.prefix} at {self.endpoint}"
        self._bucket_ok = False
        self._bucket_lock = threading.Lock()

    # -- plumbing

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Turn SDK and network failures into registry errors that say what to do."""
        try:
            yield
        except S3Error as exc:
            code = exc.code or ""
            if code in ("NoSuchKey", "NotFound") and key is not None:
                raise ObjectNotFound(key, self.location) from exc
            if code == "NoSuchBucket":
                raise self._bucket_missing() from exc
            if code == "PreconditionFailed" and key is not None:
                raise PreconditionFailed(key, self.location) from exc
            if code in _CREDENTIAL_CODES:
                raise BadCredentials(self.endpoint, code) from exc
            raise StoreError(f"S3 at {self.endpoint} failed: {code}: {exc.message}") from exc
        except ServerError as exc:  # a 5xx without an S3 error body, after the retries
            raise StoreError(
                f"S3 at {self.endpoint} failed with HTTP {exc.status_code} (after "
                f"{self.settings.max_retries} retries)"
            ) from exc
        except MinioException as exc:  # an HTTP answer that is not S3's (wrong port, a proxy)
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise StoreUnreachable(
                self.endpoint, f"it did not answer like an S3 server ({first_line})"
            ) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused, DNS, timeouts, resets
            reason = str(getattr(exc, "reason", None) or exc)
            # "HTTPConnection(host='h', port=1): Failed to ..." -> "Failed to ..."
            reason = re.sub(r"^\w*Connection(Pool)?\(.*?\): ", "", reason)
            raise StoreUnreachable(self.endpoint, reason) from exc

    def _bucket_missing(self) -> BucketMissing:
        how = (
            "nothing was published there yet (the first publish creates it)"
            if self.create_bucket
            else "creating it is not allowed here: create it, or check the bucket name"
        )
        return BucketMissing(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}: {how}")

    def _ensure_bucket(self, create: bool) -> None:
        if self._bucket_ok:
            return
        with self._bucket_lock, self._errors():
            if self._bucket_ok:
                return
            if not self.client.bucket_exists(self.bucket):
                if not (create and self.create_bucket):
                    raise self._bucket_missing()
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as exc:  # a racing publisher created it first: fine
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._bucket_ok = True

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def presigned_get_url(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        """A time-limited GET URL for one object (to link a sample grid from a UI)."""
        with self._errors(key):
            url: str = self.client.presigned_get_object(
                self.bucket, self._name(check_key(key)), expires=timedelta(seconds=expires_s)
            )
        return url

    def _conditional_put(self, name: str, data: bytes, headers: dict[str, Any]) -> str:
        # Private SDK method on purpose: it signs and sends the headers as given, retries like
        # every other call, and raises S3Error with the server's code (PreconditionFailed).
        result = self.client._put_object(self.bucket, name, data, headers)
        return str(result.etag or "")

    # -- interface

    def ensure_ready(self, *, for_write: bool) -> None:
        self._ensure_bucket(create=for_write)

    def put_file(self, key: str, path: Path, content_type: str = OCTETS) -> None:
        self._ensure_bucket(create=True)
        size = path.stat().st_size
        # Opening happens outside _errors, so a missing local file stays an OSError.
        with open(path, "rb") as fh, self._errors(key):
            self.client.put_object(self.bucket, self._name(key), fh, size, content_type)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str = JSON,
    ) -> str:
        self._ensure_bucket(create=True)
        name = self._name(key)
        with self._errors(key):
            if not if_absent and if_match is None:
                result = self.client.put_object(
                    self.bucket, name, io.BytesIO(data), len(data), content_type
                )
                return str(result.etag or "")
            headers: dict[str, Any] = {"Content-Type": content_type}
            if if_absent:
                headers["If-None-Match"] = "*"
            if if_match is not None:
                headers["If-Match"] = f'"{if_match}"'
            return self._conditional_put(name, data, headers)

    def get_bytes(self, key: str) -> tuple[bytes, str]:
        self._ensure_bucket(create=False)
        with self._errors(key):
            response = self.client.get_object(self.bucket, self._name(key))
            try:
                data = response.read()
                etag = str(response.headers.get("etag", "")).strip('"')
            finally:
                response.close()
                response.release_conn()
        return data, etag

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        self._ensure_bucket(create=False)
        with self._errors(key):
            response = self.client.get_object(self.bucket, self._name(key))
            try:
                yield from response.stream(CHUNK)
            finally:
                response.close()
                response.release_conn()

    def stat(self, key: str) -> ObjectInfo | None:
        self._ensure_bucket(create=False)
        try:
            with self._errors(key):
                obj = self.client.stat_object(self.bucket, self._name(key))
        except ObjectNotFound:
            return None
        return self._info(key, obj.size, obj.etag, obj.last_modified)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._ensure_bucket(create=False)
        with self._errors():
            for obj in self.client.list_objects(
                self.bucket, prefix=self.prefix + prefix, recursive=True
            ):
                name = obj.object_name or ""
                if obj.is_dir or not name.startswith(self.prefix):
                    continue
                yield self._info(name[len(self.prefix) :], obj.size, obj.etag, obj.last_modified)

    def delete(self, keys: Iterable[str]) -> None:
        doomed = [DeleteObject(self._name(key)) for key in keys]
        if not doomed:
            return
        self._ensure_bucket(create=False)
        with self._errors():
            errors = list(self.client.remove_objects(self.bucket, doomed))
        failed = [e for e in errors if e.code not in ("NoSuchKey", "NotFound")]
        if failed:
            first = failed[0]
            raise StoreError(
                f"S3 at {self.endpoint} did not delete {len(failed)} object(s), e.g. "
                f"{first.name}: {first.code}: {first.message}"
            )

    @staticmethod
    def _info(key: str, size: int | None, etag: str | None, when: datetime | None) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(size or 0),
            etag=(etag or "").strip('"'),
            last_modified=(when or datetime.now(UTC)).astimezone(UTC),
        )


# --- local directory -----------------------------------------------------------------------------

_SMALL = 64 * 1024  # objects up to this size get a content hash as etag (aliases, manifests)


def _tmp_path(path: Path) -> Path:
    """A unique temporary name beside ``path``; such names are skipped by :meth:`list`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    return Path(tmp)


def _is_tmp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".part")


class LocalStore(ObjectStore):
    """Objects as files under a root directory, with the same keys as on S3 (the default store).

    Writes go to a temporary file beside the target and are renamed into place. Create-only writes
    use ``link()``, which fails if the name exists; compare-and-swap writes hold an exclusive
    ``flock`` on the object's directory (POSIX), so threads and processes on one host serialise.
    On network filesystems these guarantees depend on the filesystem's rename/link/flock.
    """

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.create = create
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _check_root(self, create: bool) -> None:
        if self.root.is_dir():
            return
        if self.root.exists() and not self.root.is_dir():  # (another thread may just create it)
            raise BucketMissing(f"registry root {self.root} exists but is not a directory")
        if not (create and self.create):
            how = (
                "nothing was published there yet (the first publish creates it)"
                if self.create
                else "creating it is not allowed here: create it, or check the path"
            )
            raise BucketMissing(f"registry directory {self.root} does not exist: {how}")
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _etag(path: Path, st: os.stat_result) -> str:
        if st.st_size <= _SMALL:  # content hash: no ABA when an inode number is reused
            return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"

    @contextlib.contextmanager
    def _dir_lock(self, directory: Path) -> Iterator[None]:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def ensure_ready(self, *, for_write: bool) -> None:
        self._check_root(create=for_write)

    def put_file(self, key: str, path: Path, content_type: str = OCTETS) -> None:
        self._retry_vanished_dir(lambda: self._put_file_once(key, path))

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str = JSON,
    ) -> str:
        return self._retry_vanished_dir(
            lambda: self._put_bytes_once(key, data, if_absent=if_absent, if_match=if_match)
        )

    @staticmethod
    def _retry_vanished_dir(write: Callable[[], T]) -> T:
        """Retry a write whose directory a concurrent delete removed (it prunes empty ones)."""
        for attempt in range(3):
            try:
                return write()
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _put_file_once(self, key: str, path: Path) -> None:
        self._check_root(create=True)
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_path(dest)
        try:
            shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as fh:  # durable before the manifest that vouches for it
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _put_bytes_once(
        self, key: str, data: bytes, *, if_absent: bool, if_match: str | None
    ) -> str:
        self._check_root(create=True)
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_path(dest)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            etag = self._etag(tmp, tmp.stat())  # rename keeps inode and mtime: same etag after
            if if_absent or if_match is not None:
                with self._dir_lock(dest.parent):
                    if if_absent:
                        try:
                            os.link(tmp, dest)  # atomic create-if-absent
                        except FileExistsError:
                            raise PreconditionFailed(key, self.location) from None
                    else:
                        try:
                            current = self._etag(dest, dest.stat())
                        except FileNotFoundError:
                            raise PreconditionFailed(key, self.location) from None
                        if current != if_match:
                            raise PreconditionFailed(key, self.location)
                        os.replace(tmp, dest)
            else:
                os.replace(tmp, dest)
            return etag
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> tuple[bytes, str]:
        self._check_root(create=False)
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key, self.location) from None
        etag = (
            hashlib.md5(data, usedforsecurity=False).hexdigest()
            if len(data) <= _SMALL
            else self._etag(self._path(key), self._path(key).stat())
        )
        return data, etag

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        self._check_root(create=False)
        try:
            fh = open(self._path(key), "rb")  # noqa: SIM115 - closed below, generator-style
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key, self.location) from None
        with fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def stat(self, key: str) -> ObjectInfo | None:
        self._check_root(create=False)
        path = self._path(key)
        try:
            st = path.stat()
            if not path.is_file():
                return None
            return self._info(key, path, st)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._check_root(create=False)
        # Walk only below the deepest directory the prefix names, then filter by the full prefix.
        base_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(base_key) if base_key else self.root
        for dirpath, _dirs, names in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in names:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                path = Path(dirpath, name)
                try:
                    st = path.stat()
                    info = self._info(key, path, st)
                except FileNotFoundError:  # deleted or renamed meanwhile
                    continue
                yield info

    def delete(self, keys: Iterable[str]) -> None:
        parents: set[Path] = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        # Drop directories left empty, so a deleted version leaves no trace; never the root.
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            directory = parent
            while directory != self.root and self.root in directory.parents:
                try:
                    directory.rmdir()
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                        break
                    raise
                directory = directory.parent

    def _info(self, key: str, path: Path, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag="" if _is_tmp(path.name) else self._etag(path, st),
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )


def open_store(
    uri: str, s3: S3Settings | None = None, *, create: bool = True
) -> S3Store | LocalStore:
    """``s3://bucket[/prefix]`` -> :class:`S3Store`; a path or ``file://path`` -> LocalStore."""
    if uri.startswith("s3://"):
        rest = uri[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise InvalidName(f"not an S3 URI: {uri!r} (expected s3://bucket[/prefix])")
        return S3Store(bucket, s3, prefix=prefix, create_bucket=create)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if "://" in uri:
        raise InvalidName(f"unsupported registry URI {uri!r}: use s3://bucket[/prefix] or a path")
    return LocalStore(uri, create=create)
