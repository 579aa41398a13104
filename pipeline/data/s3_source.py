"""Dataset files from an S3/MinIO prefix, verified like every other source.

A module of its own so that reading a local or mirrored dataset never imports the S3 client.
"""

from __future__ import annotations

from pathlib import Path

from minio import Minio

from models.registry.errors import BucketMissing, ObjectNotFound, RegistryError
from models.registry.s3_store import s3_errors
from models.s3 import S3Settings, make_client, s3_settings, split_s3_uri
from pipeline.data.catalog import DatasetSpec
from pipeline.data.sources import maybe_gunzip, missing_or_invalid, write_verified
from pipeline.errors import DataSourceError


def _s3_get(client: Minio, bucket: str, key: str, settings: S3Settings) -> bytes | None:
    """The object's bytes, None if there is no such key; DataSourceError for everything else
    (the registry's S3 error mapping, so both name a failure the same way)."""
    endpoint = settings.endpoint

    def bucket_missing() -> BucketMissing:
        return BucketMissing(f"S3 bucket {bucket!r} does not exist at {endpoint}")

    try:
        with s3_errors(
            endpoint,
            f"s3://{bucket}",
            key=key,
            bucket_missing=bucket_missing,
            max_retries=settings.max_retries,
        ):
            response = client.get_object(bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()
    except ObjectNotFound:
        return None
    except RegistryError as exc:
        raise DataSourceError(str(exc)) from exc


def fetch_from_s3(
    spec: DatasetSpec, uri: str, dest: Path, settings: S3Settings | None = None
) -> None:
    """Copy the dataset's files (raw or .gz) from ``s3://bucket/prefix`` into ``dest``."""
    settings = settings or s3_settings()
    try:
        bucket, prefix = split_s3_uri(uri)
        client = make_client(settings)
    except ValueError as exc:  # a malformed URI, an access key without a secret key
        raise DataSourceError(str(exc)) from exc
    for name in missing_or_invalid(spec, dest):
        data = None
        for key in (f"{prefix}{name}", f"{prefix}{name}.gz"):
            data = _s3_get(client, bucket, key, settings)
            if data is not None:
                break
        if data is None:
            raise DataSourceError(f"{uri}: no {name} or {name}.gz under that prefix")
        origin = f"s3://{bucket}/{prefix}{name}"
        write_verified(dest, name, maybe_gunzip(data, origin), spec.md5[name], origin)
