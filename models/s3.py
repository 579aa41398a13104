"""S3/MinIO connection settings and client, shared by data sources, the registry and serving.

Credentials come only from the environment (or .env): never from code or images.
"""

from __future__ import annotations

from urllib.parse import urlparse

from minio import Minio
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class S3Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCGAN_S3_", env_file=".env", extra="ignore")

    endpoint: str = "127.0.0.1:9000"  # host:port, or a URL (http:// or https:// sets secure)
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    secure: bool = False  # TLS
    region: str | None = None

    def host_and_secure(self) -> tuple[str, bool]:
        if "://" in self.endpoint:
            parsed = urlparse(self.endpoint)
            return parsed.netloc, parsed.scheme == "https"
        return self.endpoint, self.secure


def make_client(settings: S3Settings | None = None) -> Minio:
    settings = settings or S3Settings()
    host, secure = settings.host_and_secure()
    return Minio(
        host,
        access_key=settings.access_key.get_secret_value() if settings.access_key else None,
        secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
        secure=secure,
        region=settings.region,
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return parsed.netloc, prefix
