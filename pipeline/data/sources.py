"""Where dataset files come from: a local directory, an S3/MinIO prefix, or public mirrors.

Every fetch lands a file under a temporary name, verifies its md5, and only then renames it into
place, so an interrupted or corrupt fetch never leaves a file that looks valid.
"""

from __future__ import annotations

import http.client
import io
import tarfile
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from models.fileio import write_atomic
from models.s3 import S3Settings, make_client, split_s3_uri
from pipeline.data.catalog import DatasetSpec, Mirror
from pipeline.data.idx import find_file, gunzip, md5_hex, read_bytes
from pipeline.errors import DataError, DataSourceError


def missing_or_invalid(spec: DatasetSpec, directory: Path) -> list[str]:
    """Names of the spec's files that are absent from ``directory`` or fail their md5."""
    bad = []
    for name in spec.files:
        path = find_file(directory, name)
        if path is None:
            bad.append(name)
            continue
        try:
            ok = md5_hex(read_bytes(path)) == spec.md5[name]
        except DataError:
            ok = False
        if not ok:
            bad.append(name)
    return bad


def _write_verified(
    directory: Path, name: str, data: bytes, expected_md5: str, origin: str
) -> None:
    """Write raw IDX bytes atomically as ``directory/name`` once their md5 checks out."""
    actual = md5_hex(data)
    if actual != expected_md5:
        raise DataError(f"{origin}: md5 of {name} is {actual}, expected {expected_md5}; not saved")
    write_atomic(directory / name, data)
    (directory / f"{name}.gz").unlink(missing_ok=True)  # the raw copy now takes precedence


def _maybe_gunzip(data: bytes, origin: str) -> bytes:
    """Remote objects may be raw or gzipped whatever their name: decide by the magic bytes."""
    return gunzip(data, origin) if data[:2] == b"\x1f\x8b" else data


# --- S3 / MinIO ----------------------------------------------------------------------------


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
        _write_verified(dest, name, _maybe_gunzip(data, origin), spec.md5[name], origin)


# --- public mirrors --------------------------------------------------------------------------


def _http_get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "dcgan-mnist-service"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data: bytes = response.read()
        return data


def _fetch_mirror(
    spec: DatasetSpec, mirror: Mirror, names: Iterable[str], dest: Path, timeout: float
) -> None:
    names = list(names)
    if mirror.tarball_member_dir is not None:
        blob = _http_get(mirror.base, timeout)
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for name in names:
                member = f"{mirror.tarball_member_dir}/{name}"
                try:
                    handle = tar.extractfile(member)
                except KeyError:
                    raise DataSourceError(f"{mirror.base}: no {member} in the tarball") from None
                if handle is None:
                    raise DataSourceError(f"{mirror.base}: {member} is not a file")
                data = _maybe_gunzip(handle.read(), f"{mirror.base}:{member}")
                _write_verified(dest, name, data, spec.md5[name], f"{mirror.base}:{member}")
        return
    for name in names:
        url = f"{mirror.base}{name}{mirror.suffix}"
        data = _maybe_gunzip(_http_get(url, timeout), url)
        _write_verified(dest, name, data, spec.md5[name], url)


def download(
    spec: DatasetSpec, dest: Path, mirrors: Iterable[Mirror] | None = None, timeout: float = 60.0
) -> None:
    """Fetch whatever is missing or invalid in ``dest`` from the first mirror that works."""
    failures = []
    for mirror in mirrors if mirrors is not None else spec.mirrors:
        names = missing_or_invalid(spec, dest)
        if not names:
            return
        try:
            _fetch_mirror(spec, mirror, names, dest, timeout)
        except (
            OSError,  # urllib.error.URLError/HTTPError, refused, reset, timeouts
            http.client.HTTPException,  # IncompleteRead, BadStatusLine
            zlib.error,  # a corrupt gzip stream inside a tarball
            EOFError,
            tarfile.TarError,
            DataError,
            DataSourceError,
        ) as exc:
            failures.append(f"{mirror.base}: {getattr(exc, 'reason', exc)}")
    if missing_or_invalid(spec, dest):
        tried = "; ".join(failures) or "no mirrors configured"
        raise DataSourceError(
            f"could not download {spec.name} (offline?). Tried: {tried}. "
            f"Put the four IDX files (raw or .gz) in {dest} or use --data s3://bucket/prefix"
        )
