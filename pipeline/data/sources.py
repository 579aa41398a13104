"""Where dataset files come from: a local directory or public mirrors (S3/MinIO: ``s3_source``).

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

from models.fileio import write_atomic
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


def write_verified(directory: Path, name: str, data: bytes, expected_md5: str, origin: str) -> None:
    """Write raw IDX bytes atomically as ``directory/name`` once their md5 checks out."""
    actual = md5_hex(data)
    if actual != expected_md5:
        raise DataError(f"{origin}: md5 of {name} is {actual}, expected {expected_md5}; not saved")
    write_atomic(directory / name, data)
    (directory / f"{name}.gz").unlink(missing_ok=True)  # the raw copy now takes precedence


def maybe_gunzip(data: bytes, origin: str) -> bytes:
    """Remote objects may be raw or gzipped whatever their name: decide by the magic bytes."""
    return gunzip(data, origin) if data[:2] == b"\x1f\x8b" else data


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
                data = maybe_gunzip(handle.read(), f"{mirror.base}:{member}")
                write_verified(dest, name, data, spec.md5[name], f"{mirror.base}:{member}")
        return
    for name in names:
        url = f"{mirror.base}{name}{mirror.suffix}"
        data = maybe_gunzip(_http_get(url, timeout), url)
        write_verified(dest, name, data, spec.md5[name], url)


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
