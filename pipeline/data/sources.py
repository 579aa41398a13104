"""Where dataset files come from: a local directory, an S3/MinIO prefix, or public mirrors.

Every fetch lands a file under a temporary name, verifies its md5, and only then renames it into
place, so an interrupted or corrupt fetch never leaves a file that looks valid.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from minio.error import S3Error

from models.s3 import S3Settings, make_client, split_s3_uri
from pipeline.data.catalog import DatasetSpec, Mirror
from pipeline.data.idx import find_file, md5_hex, read_bytes
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


def _write_verified(directory: Path, name: str, data: bytes, expected_md5: str, origin: str) -> None:
    """Write raw IDX bytes atomically as ``directory/name`` once their md5 checks out."""
    actual = md5_hex(data)
    if actual != expected_md5:
        raise DataError(f"{origin}: md5 of {name} is {actual}, expected {expected_md5}; not saved")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (directory / name, directory / f"{name}.gz"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; datasets are not secret
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _maybe_gunzip(data: bytes, origin: str) -> bytes:
    if data[:2] == b"\x1f\x8b":
        import gzip

        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{origin}: corrupt gzip ({exc})") from exc
    return data


# --- S3 / MinIO ----------------------------------------------------------------------------


def fetch_from_s3(
    spec: DatasetSpec, uri: str, dest: Path, settings: S3Settings | None = None
) -> None:
    """Copy the dataset's files (raw or .gz) from ``s3://bucket/prefix`` into ``dest``."""
    settings = settings or S3Settings()
    bucket, prefix = split_s3_uri(uri)
    client = make_client(settings)
    endpoint = settings.endpoint
    for name in missing_or_invalid(spec, dest):
        data = None
        for key in (f"{prefix}{name}", f"{prefix}{name}.gz"):
            try:
                response = client.get_object(bucket, key)
                try:
                    data = response.read()
                finally:
                    response.close()
                    response.release_conn()
                break
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NotFound"):
                    continue
                if exc.code == "NoSuchBucket":
                    raise DataSourceError(f"S3 bucket {bucket!r} does not exist at {endpoint}") from exc
                if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                    raise DataSourceError(
                        f"S3 at {endpoint} refused the credentials ({exc.code}): "
                        "check DCGAN_S3_ACCESS_KEY and DCGAN_S3_SECRET_KEY"
                    ) from exc
                raise DataSourceError(f"S3 error from {endpoint}: {exc.code}: {exc.message}") from exc
            except OSError as exc:  # connection refused, DNS, timeouts (urllib3 errors are OSErrors)
                raise DataSourceError(f"cannot reach S3 endpoint {endpoint}: {exc}") from exc
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


def _fetch_mirror(spec: DatasetSpec, mirror: Mirror, names: Iterable[str], dest: Path, timeout: float) -> None:
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
        _write_verified(dest, name, _maybe_gunzip(_http_get(url, timeout), url), spec.md5[name], url)


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
        except (urllib.error.URLError, OSError, DataError, DataSourceError, tarfile.TarError) as exc:
            failures.append(f"{mirror.base}: {getattr(exc, 'reason', exc)}")
    if missing_or_invalid(spec, dest):
        tried = "; ".join(failures) or "no mirrors configured"
        raise DataSourceError(
            f"could not download {spec.name} (offline?). Tried: {tried}. "
            f"Put the four IDX files (raw or .gz) in {dest} or use --data s3://bucket/prefix"
        )
