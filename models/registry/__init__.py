"""The model registry (contract 3): torch-free, used by the pipeline, the CLI and serving.

``ModelRegistry(store, model_name)`` over an :class:`ObjectStore`: :class:`S3Store` (minio SDK)
or :class:`LocalStore` (a directory with the same keys). Errors derive from
:class:`~models.registry.errors.UserFacingError`: print ``str(exc)`` and exit 2.
"""

from __future__ import annotations

from models.registry.errors import (
    AliasNotFound,
    BadCredentials,
    BucketMissing,
    ConcurrentUpdate,
    IntegrityError,
    InvalidName,
    PublishInProgress,
    RegistryError,
    StoreError,
    StoreUnreachable,
    UserFacingError,
    VersionExists,
    VersionInUse,
    VersionNotFound,
)
from models.registry.manifest import FileEntry, Manifest, sha256_file
from models.registry.registry import (
    LATEST,
    PRODUCTION,
    AliasRecord,
    ModelRegistry,
    VersionInfo,
    new_version_id,
)
from models.registry.settings import RegistrySettings, open_registry
from models.registry.store import LocalStore, ObjectInfo, ObjectStore, S3Store, open_store

__all__ = [
    "LATEST",
    "PRODUCTION",
    "AliasNotFound",
    "AliasRecord",
    "BadCredentials",
    "BucketMissing",
    "ConcurrentUpdate",
    "FileEntry",
    "IntegrityError",
    "InvalidName",
    "LocalStore",
    "Manifest",
    "ModelRegistry",
    "ObjectInfo",
    "ObjectStore",
    "PublishInProgress",
    "RegistryError",
    "RegistrySettings",
    "S3Store",
    "StoreError",
    "StoreUnreachable",
    "UserFacingError",
    "VersionExists",
    "VersionInUse",
    "VersionInfo",
    "VersionNotFound",
    "new_version_id",
    "open_registry",
    "open_store",
    "sha256_file",
]
