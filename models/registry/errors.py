"""Registry errors: each names what was wrong and what to do, in one line.

UserFacingError               base for errors a user can act on (CLI: one line, exit code 2)
└── RegistryError
    ├── InvalidName            a model name, version id, alias or file name that is not allowed
    ├── StoreError             the store itself failed (anything not listed below)
    │   ├── StoreUnreachable   no answer from the endpoint (names it)
    │   │   └── NotAnS3Server  an answer, but not from S3
    │   ├── BadCredentials     the endpoint refused the credentials
    │   └── BucketMissing      the bucket (or local root directory) does not exist
    ├── ObjectNotFound         a key is absent (store level; the registry turns it into the below)
    ├── PreconditionFailed     a conditional write lost (store level: create-only, CAS)
    ├── VersionExists          publishing a version id that already has a manifest
    ├── PublishInProgress      another publish holds the version id (or one was interrupted)
    ├── VersionNotFound
    ├── AliasNotFound
    ├── IntegrityError         a file's sha256 or size differs from the manifest
    ├── CacheError             the local model cache cannot be written (disk full, permissions)
    ├── VersionInUse           deleting a version an alias points to
    └── ConcurrentUpdate       an alias kept changing under us (too many lost compare-and-swaps)

``UserFacingError`` (models/errors.py) is also the base of ``pipeline.errors.UserError``, so the
CLI catches every user-facing error with one clause.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from models.errors import UserFacingError as UserFacingError  # re-exported for the registry


class RegistryError(UserFacingError):
    """Base of every error the model registry raises on purpose."""


class InvalidName(RegistryError, ValueError):
    pass


class StoreError(RegistryError):
    pass


class StoreUnreachable(StoreError):
    def __init__(self, endpoint: str, reason: object, message: str | None = None) -> None:
        self.endpoint = endpoint
        super().__init__(
            message
            or f"cannot reach S3 endpoint {endpoint}: {reason} "
            "(check DCGAN_S3_ENDPOINT and that the server is running)"
        )


class NotAnS3Server(StoreUnreachable):
    """Something answers at the endpoint, but not S3 (a wrong port, a proxy's page)."""

    def __init__(self, endpoint: str, answer: str) -> None:
        super().__init__(
            endpoint,
            answer,
            f"{endpoint} did not answer like an S3 server ({answer}): check DCGAN_S3_ENDPOINT",
        )


class BadCredentials(StoreError):
    def __init__(self, endpoint: str, code: str, *, writing: bool = False) -> None:
        self.endpoint = endpoint
        self.code = code
        if code != "AccessDenied":
            hint = "the access key or secret key is wrong"
        elif writing:
            # Servers hold a read-only credential on purpose (least privilege).
            hint = (
                "this credential may not write to this bucket (a server's read-only one?): "
                "publishing, promoting and deleting need the publisher's credential"
            )
        else:
            hint = "the credentials are wrong or lack permission for this bucket"
        super().__init__(
            f"S3 at {endpoint} refused the credentials ({code}): {hint}; "
            "check DCGAN_S3_ACCESS_KEY and DCGAN_S3_SECRET_KEY"
        )


class BucketMissing(StoreError):
    pass


class ObjectNotFound(RegistryError):
    def __init__(self, key: str, where: str) -> None:
        self.key = key
        super().__init__(f"no object {key!r} in {where}")


class PreconditionFailed(RegistryError):
    def __init__(self, key: str, where: str) -> None:
        self.key = key
        super().__init__(f"conditional write of {key!r} in {where} lost to another writer")


class VersionExists(RegistryError):
    pass


class PublishInProgress(RegistryError):
    pass


class VersionNotFound(RegistryError):
    pass


class AliasNotFound(RegistryError):
    pass


class SignatureError(RegistryError):
    """A version's manifest is unsigned, signed by an untrusted key, or does not match its
    signature: nothing of the version may be used."""


class IntegrityError(RegistryError):
    def __init__(
        self,
        file: str,
        expected_sha256: str,
        actual_sha256: str,
        *,
        where: str,
        expected_size: int | None = None,
        actual_size: int | None = None,
    ) -> None:
        self.file = file
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256
        sizes = ""
        if expected_size is not None and actual_size is not None and expected_size != actual_size:
            sizes = f"; size {actual_size} bytes, manifest says {expected_size}"
        super().__init__(
            f"{file} of {where} failed verification: sha256 {actual_sha256}, manifest says "
            f"{expected_sha256}{sizes}. The stored file was modified or corrupted: do not use "
            "this version; publish the model again under a new version id"
        )


class CacheError(RegistryError):
    """Writing the local model cache failed: disk full, permission denied, read-only file system.

    ``errno`` is the operating system's code, so callers can tell these apart from an outage."""

    def __init__(self, cache_dir: Path, cause: OSError) -> None:
        self.cache_dir = cache_dir
        self.errno = cause.errno
        self.path = cause.filename or cache_dir
        what = os.strerror(cause.errno) if cause.errno else str(cause)
        hint = {
            errno.ENOSPC: "free space there",
            errno.EDQUOT: "free space there (disk quota exceeded)",
            errno.EACCES: "give this process write access to it",
            errno.EPERM: "give this process write access to it",
            errno.EROFS: "mount it writable",
        }.get(cause.errno or 0, "check the directory")
        super().__init__(
            f"cannot write the model cache: {what}: {self.path}; {hint}, "
            "or set DCGAN_REGISTRY_CACHE_DIR to another directory"
        )


class VersionInUse(RegistryError):
    def __init__(self, version: str, aliases: list[str]) -> None:
        self.version = version
        self.aliases = aliases
        names = ", ".join(aliases)
        super().__init__(
            f"version {version} is the target of alias(es) {names}: "
            "point them at another version first (promote), then delete"
        )


class ConcurrentUpdate(RegistryError):
    pass
