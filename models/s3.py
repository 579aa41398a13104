"""S3/MinIO connection settings and client, shared by data sources, the registry and serving.

Credentials come only from the environment (or .env): never from code or images.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.secrets import check_secret
from models.settings import read_once


def check_s3_key(value: SecretStr, setting: str) -> SecretStr:
    """An S3 access or secret key (by ``setting``'s name), refused when a placeholder or
    shorter than MinIO's own minimums: 3 characters for an access key, 8 for a secret key."""
    return check_secret(value, setting, 8 if setting.endswith("SECRET_KEY") else 3)


class S3Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCGAN_S3_", env_file=".env", extra="ignore")

    endpoint: str = "127.0.0.1:9000"  # host:port, or a URL (http:// or https:// sets secure)
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    secure: bool = False  # TLS
    region: str | None = None
    # minio's own defaults are a 5-minute connect timeout and 5 retries: a firewalled endpoint
    # would hang for half an hour, a refused one for 6 s. These fail within seconds instead.
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)  # per socket read, not per transfer
    max_retries: int = Field(default=3, ge=0)  # errors and 500/502/503/504; backoff 0.2 s, x2

    @field_validator("access_key", "secret_key")
    @classmethod
    def _real_credential(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # anonymous access, as before
        return check_s3_key(value, f"DCGAN_S3_{str(info.field_name).upper()}")

    def host_and_secure(self) -> tuple[str, bool]:
        if "://" in self.endpoint:
            parsed = urlparse(self.endpoint)
            return parsed.netloc, parsed.scheme == "https"
        return self.endpoint, self.secure


s3_settings = read_once(S3Settings)


def make_http_client(settings: S3Settings) -> urllib3.PoolManager:
    """The connection pool minio would build, with our timeouts and retry budget."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.connect_timeout_s, read=settings.read_timeout_s),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=settings.max_retries,
            backoff_factor=0.2,
            status_forcelist=[500, 502, 503, 504],
        ),
    )


def make_client(settings: S3Settings | None = None) -> Minio:
    settings = settings or s3_settings()
    host, secure = settings.host_and_secure()
    return Minio(
        host,
        access_key=settings.access_key.get_secret_value() if settings.access_key else None,
        secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
        secure=secure,
        region=settings.region,
        http_client=make_http_client(settings),
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
