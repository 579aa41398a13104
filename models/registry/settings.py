"""Where the registry lives, from the environment (``DCGAN_REGISTRY_*``) or .env."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.registry.registry import DEFAULT_GRACE_S, ModelRegistry
from models.registry.store import open_store
from models.s3 import S3Settings


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCGAN_REGISTRY_", env_file=".env", extra="ignore")

    # A local directory (the embedded default) or s3://bucket[/prefix] (S3 from DCGAN_S3_*).
    uri: str = "registry"
    model_name: str = "cdcgan-mnist"
    create_bucket: bool = True  # on the first publish; False: a missing bucket is an error
    cache_dir: Path = Path("~/.cache/dcgan-mnist/models")
    grace_period_s: float = Field(default=DEFAULT_GRACE_S, ge=0)


def open_registry(
    settings: RegistrySettings | None = None, s3: S3Settings | None = None
) -> ModelRegistry:
    settings = settings or RegistrySettings()
    store = open_store(
        settings.uri,
        s3 if settings.uri.startswith("s3://") else None,
        create=settings.create_bucket,
    )
    return ModelRegistry(store, settings.model_name, grace_period_s=settings.grace_period_s)
