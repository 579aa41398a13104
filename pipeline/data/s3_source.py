"""Dataset files from an S3/MinIO prefix, verified like every other source.

A module of its own so that reading a local or mirrored dataset never imports the S3 client.
"""

from __future__ import annotations

from pathlib import Path

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from models.s3 import S3Settings, make_client, split_s3_uri
from pipeline.data.catalog import DatasetSpec
from pipeline.data.sources import maybe_gunzip, missing_or_invalid, write_verified
from pipeline.errors import DataSourceError


def _s3_get(client: Minio, bucket: str, key: str, endpoint: str) -> bytes | None:
    """The object's bytes, None if there is no such key; DataSourceError for everything else."""
    try:
        response = client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NotFound"):
            return None
        if exc.code == "NoSuchBucket":
            raise DataSourceError(f"S3 bucket {bucket!r} does not exist at {endpoint}") from exc
        if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise DataSourceError(
                f"S3 at {endpoint} refused the credentials ({exc.code}): "
                "check DCGAN_S3_ACCESS_KEY and DCGAN_S3_SECRET_KEY"
            ) from exc
        raise DataSourceError(f"S3 error from {endpoint}: {exc.code}: {exc.message}") from exc
    except MinioException as exc:  # an HTTP answer that is not S3's (wrong port, a proxy page)
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataSourceError(
            f"{endpoint} did not answer like an S3 server ({first_line}): check DCGAN_S3_ENDPOINT"
        ) from exc
    except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused, DNS, timeouts, resets
        reason = getattr(exc, "reason", None) or exc
        raise DataSourceError(
            f"cannot reach S3 endpoint {endpoint}: {reason} (check DCGAN_S3_ENDPOINT)"
        ) from exc


def fetch_from_s3(
    spec: DatasetSpec, uri: str, dest: Path, settings: S3Settings | None = None
) -> None:
    """Copy the dataset's files (raw or .gz) from ``s3://bucket/prefix`` into ``dest``."""
    settings = settings or S3Settings()
    try:
        bucket, prefix = split_s3_uri(uri)
        client = make_client(settings)
    except ValueError as exc:  # a malformed URI, an access key without a secret key
        raise DataSourceError(str(exc)) from exc
    endpoint = settings.endpoint
    for name in missing_or_invalid(spec, dest):
        data = None
        for key in (f"{prefix}{name}", f"{prefix}{name}.gz"):
            data = _s3_get(client, bucket, key, endpoint)
            if data is not None:
                break
        if data is None:
            raise DataSourceError(f"{uri}: no {name} or {name}.gz under that prefix")
        origin = f"s3://{bucket}/{prefix}{name}"
        write_verified(dest, name, maybe_gunzip(data, origin), spec.md5[name], origin)
