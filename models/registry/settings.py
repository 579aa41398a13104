"""Where the registry lives, from the environment (``DCGAN_REGISTRY_*``) or .env."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.registry.errors import InvalidName
from models.registry.local_store import LocalStore
from models.registry.registry import DEFAULT_GRACE_S, DEFAULT_LEASE_S, ModelRegistry
from models.registry.s3_store import S3Store
from models.registry.signing import ManifestSigner, ManifestVerifier
from models.s3 import S3Settings
from models.settings import read_once


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCGAN_REGISTRY_", env_file=".env", extra="ignore")

    # A local directory (the embedded default) or s3://bucket[/prefix] (S3 from DCGAN_S3_*).
    uri: str = "registry"
    model_name: str = "cdcgan-mnist"
    create_bucket: bool = True  # on the first publish; False: a missing bucket is an error
    cache_dir: Path = Path("~/.cache/dcgan-mnist/models")
    grace_period_s: float = Field(default=DEFAULT_GRACE_S, ge=0)
    # A version's claim not refreshed for this long (a publisher killed mid-upload) is taken
    # over by the next publish of that id; it must exceed the longest single file upload.
    claim_lease_s: float = Field(default=DEFAULT_LEASE_S, gt=0)
    # Publishers: the Ed25519 private key that signs each published manifest; consumers: the
    # publishers' public keys, comma-separated (several while a key is rotated), and when set,
    # only versions signed by one of them are used. Each is a PEM file's path or the key's
    # one-line form, both made by `dcgan keys generate`.
    signing_key: SecretStr | None = None
    trusted_keys: str = ""

    def trusted_key_values(self) -> list[str]:
        return [part.strip() for part in self.trusted_keys.split(",") if part.strip()]


registry_settings = read_once(RegistrySettings)


def open_registry(
    settings: RegistrySettings | None = None, s3: S3Settings | None = None
) -> ModelRegistry:
    settings = settings or registry_settings()
    store = open_store(
        settings.uri,
        s3 if settings.uri.startswith("s3://") else None,
        create=settings.create_bucket,
    )
    trusted = settings.trusted_key_values()
    key = settings.signing_key.get_secret_value() if settings.signing_key else ""
    return ModelRegistry(
        store,
        settings.model_name,
        grace_period_s=settings.grace_period_s,
        claim_lease_s=settings.claim_lease_s,
        signer=ManifestSigner.from_setting(key) if key else None,
        verifier=ManifestVerifier.from_setting(trusted) if trusted else None,
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
