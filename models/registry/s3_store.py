"""The S3 object store (MinIO, AWS, SeaweedFS, ...) through the minio SDK, and the one mapping of
the SDK's errors onto the registry's (also used by the S3 dataset source)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name

from models.registry.errors import (
    BadCredentials,
    BucketMissing,
    InvalidName,
    NotAnS3Server,
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
    StoreUnreachable,
)
from models.registry.store import CHUNK, JSON, OCTETS, ObjectInfo, ObjectStore, check_key
from models.s3 import S3Settings, make_client, s3_settings

_CREDENTIAL_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
_log = logging.getLogger("models.registry")


@contextlib.contextmanager
def s3_errors(
    endpoint: str,
    location: str,
    *,
    key: str | None = None,
    bucket_missing: Callable[[], StoreError],
    max_retries: int,
    writing: bool = False,
) -> Iterator[None]:
    """Turn minio SDK and network failures into registry errors that say what to do.

    ``key``: the object the call is about (its absence is ObjectNotFound, a failed condition
    PreconditionFailed); ``bucket_missing`` builds the error for a missing bucket; ``writing``:
    the call changes the bucket (a refusal then points at a read-only credential).
    """
    try:
        yield
    except S3Error as exc:
        code = exc.code or ""
        if code in ("NoSuchKey", "NotFound") and key is not None:
            raise ObjectNotFound(key, location) from exc
        if code == "NoSuchBucket":
            raise bucket_missing() from exc
        if code == "PreconditionFailed" and key is not None:
            raise PreconditionFailed(key, location) from exc
        if code in _CREDENTIAL_CODES:
            raise BadCredentials(endpoint, code, writing=writing) from exc
        raise StoreError(f"S3 at {endpoint} failed: {code}: {exc.message}") from exc
    except ServerError as exc:  # a 5xx without an S3 error body, after the retries
        raise StoreError(
            f"S3 at {endpoint} failed with HTTP {exc.status_code} (after {max_retries} retries)"
        ) from exc
    except MinioException as exc:  # an HTTP answer that is not S3's (wrong port, a proxy)
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise NotAnS3Server(endpoint, first_line) from exc
    except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused, DNS, timeouts, resets
        reason = str(getattr(exc, "reason", None) or exc)
        # "HTTPConnection(host='h', port=1): Failed to ..." -> "Failed to ..."
        reason = re.sub(r"^\w*Connection(Pool)?\(.*?\): ", "", reason)
        raise StoreUnreachable(endpoint, reason) from exc


class S3Store(ObjectStore):
    """Objects in an S3 bucket (MinIO, AWS, SeaweedFS, ...) through the minio SDK.

    Conditional writes use the ``If-None-Match`` / ``If-Match`` PUT preconditions (AWS S3 since
    2024, MinIO, SeaweedFS). minio-py 7.2 has no public argument for them (``put_object`` turns
    unknown headers into ``x-amz-meta-*``), so the single-part ``Minio._put_object`` is used for
    these small objects; see :meth:`_conditional_put`. Everything the registry guarantees rests
    on them, so before the first write a store checks that the server honours both
    (:meth:`_check_conditional_writes`) and refuses to write where it does not.
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
        self.settings = settings or s3_settings()
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
        self._conditions_ok = False
        # Conditional PUTs are never retried by the HTTP layer: after a lost answer the retry
        # would fail its own condition. _conditional_put retries, checking first what landed.
        self._unretried = client or make_client(self.settings.model_copy(update={"max_retries": 0}))

    # -- plumbing

    def _errors(
        self, key: str | None = None, *, writing: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        return s3_errors(
            self.endpoint,
            self.location,
            key=key,
            bucket_missing=self._bucket_missing,
            max_retries=self.settings.max_retries,
            writing=writing,
        )

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
        with self._bucket_lock, self._errors(writing=create):
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

    def _conditional_put(self, key: str, data: bytes, headers: dict[str, Any]) -> str:
        """One conditional PUT, retried only after checking whether the last try landed.

        The private SDK method on purpose: it signs and sends the headers as given and raises
        S3Error with the server's code (PreconditionFailed). When an answer is lost (a dropped
        connection, a 5xx) the write may have happened: the object is read back, and if it holds
        exactly ``data`` (every body the registry writes is unique: tokens, timestamps) the write
        was ours and succeeded; only otherwise is the PUT sent again.
        """
        name = self._name(key)
        for attempt in range(self.settings.max_retries + 1):
            try:
                result = self._unretried._put_object(self.bucket, name, data, headers)
                return str(result.etag or "")
            except S3Error as exc:
                if exc.code != "PreconditionFailed" or attempt == 0:
                    raise
                landed = self._holds(key, data)  # our earlier try may have made it fail
                if landed is None:
                    raise
                return landed
            except (ServerError, OSError, urllib3.exceptions.HTTPError):
                if attempt == self.settings.max_retries:
                    raise
                landed = self._holds(key, data)
                if landed is not None:
                    log_retry = "registry.conditional_put_landed key=%s attempt=%d"
                    _log.info(log_retry, name, attempt + 1)
                    return landed
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _holds(self, key: str, data: bytes) -> str | None:
        """The etag of ``key`` when it holds exactly ``data``; None when absent or other."""
        try:
            stored, etag = self.get_bytes(key)
        except ObjectNotFound:
            return None
        return etag if stored == data else None

    def _check_conditional_writes(self) -> None:
        """Refuse to write to a server that ignores If-None-Match or If-Match: there, a second
        publish of an id would overwrite a version and concurrent alias moves would be lost."""
        if self._conditions_ok:
            return
        key = f".dcgan-write-check/{secrets.token_hex(8)}"
        ignored: list[str] = []
        try:
            with self._errors(key, writing=True):
                etag = self._conditional_put(key, b"1", {"If-None-Match": "*"})
            for header, value in (("If-None-Match", "*"), ("If-Match", '"0123456789abcdef"')):
                try:
                    with self._errors(key):
                        self._conditional_put(key, b"2", {header: value})
                    ignored.append(header)
                except PreconditionFailed:
                    pass
            with self._errors(key):
                self._conditional_put(key, b"3", {"If-Match": f'"{etag}"'})
        finally:
            with contextlib.suppress(StoreError):
                self.delete([key])
        if ignored:
            raise StoreError(
                f"S3 at {self.endpoint} ignores {' and '.join(ignored)} on PUT, so versions could "
                "be overwritten and alias moves lost: nothing is written there. Use a server "
                "that honours conditional writes (AWS S3, MinIO and SeaweedFS do)"
            )
        self._conditions_ok = True

    # -- interface

    def ensure_ready(self, *, for_write: bool) -> None:
        self._ensure_bucket(create=for_write)
        if for_write:
            self._check_conditional_writes()

    def put_file(self, key: str, path: Path, content_type: str = OCTETS) -> None:
        self._ensure_bucket(create=True)
        size = path.stat().st_size
        # Opening happens outside _errors, so a missing local file stays an OSError.
        with open(path, "rb") as fh, self._errors(key, writing=True):
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
        with self._errors(key, writing=True):
            if not if_absent and if_match is None:
                result = self.client.put_object(
                    self.bucket, name, io.BytesIO(data), len(data), content_type
                )
                return str(result.etag or "")
            self._check_conditional_writes()
            headers: dict[str, Any] = {"Content-Type": content_type}
            if if_absent:
                headers["If-None-Match"] = "*"
            if if_match is not None:
                headers["If-Match"] = f'"{if_match}"'
            return self._conditional_put(key, data, headers)

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
        with self._errors(writing=True):
            errors = list(self.client.remove_objects(self.bucket, doomed))
        failed = [e for e in errors if e.code not in ("NoSuchKey", "NotFound")]
        if failed:
            first = failed[0]
            if first.code in _CREDENTIAL_CODES:
                raise BadCredentials(self.endpoint, first.code, writing=True)
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
