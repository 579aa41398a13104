"""Reading IDX files (the MNIST container format), raw or gzipped, with md5 verification."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from models import idx as idx_format
from pipeline.errors import DataError


def gunzip(data: bytes, origin: str) -> bytes:
    """Decompress gzip bytes; a corrupt stream is a DataError naming where it came from."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; bad deflate: zlib
        raise DataError(f"{origin}: cannot read: corrupt gzip ({exc})") from exc


def read_bytes(path: Path) -> bytes:
    """The uncompressed bytes of ``path`` (transparently gunzipped if it ends in .gz)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    return gunzip(raw, str(path)) if path.suffix == ".gz" else raw


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array (models/idx.py), a malformed file being a DataError."""
    try:
        return idx_format.parse_idx(data, source)
    except idx_format.IdxFormatError as exc:
        raise DataError(str(exc)) from exc


def find_file(directory: Path, name: str) -> Path | None:
    """The raw or gzipped copy of ``name`` in ``directory``, raw preferred."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_verified(path: Path, expected_md5: str) -> np.ndarray:
    """Read an IDX file and refuse it unless its uncompressed md5 is the expected one."""
    data = read_bytes(path)
    actual = md5_hex(data)
    if actual != expected_md5:
        raise DataError(
            f"{path}: md5 of the uncompressed file is {actual}, expected {expected_md5} "
            "(corrupt, truncated or a different file): replace it or delete it to re-fetch"
        )
    return parse_idx(data, str(path))
