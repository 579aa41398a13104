"""The model registry (contract 3): torch-free, used by the pipeline, the CLI and serving.

``ModelRegistry(store, model_name)`` over an :class:`ObjectStore`: :class:`S3Store` (minio SDK)
or :class:`LocalStore` (a directory with the same keys). Errors derive from
:class:`~models.registry.errors.UserFacingError`: print ``str(exc)`` and exit 2.
"""

from __future__ import annotations

from models.contract import LATEST, PRODUCTION
from models.fileio import sha256_file
from models.registry.aliases import AliasRecord
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
from models.registry.local_store import LocalStore
from models.registry.manifest import FileEntry, Manifest
from models.registry.names import new_version_id
from models.registry.registry import ModelRegistry
from models.registry.s3_store import S3Store
from models.registry.settings import RegistrySettings, open_registry, open_store
from models.registry.store import ObjectInfo, ObjectStore
from models.registry.versions import VersionInfo

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
