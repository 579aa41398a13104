"""Files for the whole project: atomic writes (a reader sees the old file or the new one, never
half of either) and the sha256 that manifests, exports and caches record."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".part"  # temporary files are ".<name>.<random>.part" beside their target
CHUNK = 1 << 20


def temp_path_beside(path: Path) -> Path:
    """A new, empty, uniquely named temporary file in ``path``'s directory (hidden, ``.part``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    return Path(tmp)


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _write_atomically(path: Path, fill: Callable[[BinaryIO], None], mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""

    def fill(fh: BinaryIO) -> None:
        fh.write(data)

    _write_atomically(path, fill, mode)


def copy_atomic(source: Path, path: Path, mode: int = 0o644) -> None:
    """Copy ``source`` to a temporary file beside ``path``, then rename it into place."""

    def fill(fh: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, fh, CHUNK)

    _write_atomically(path, fill, mode)


class ShortRead(EOFError):
    """A stream ended before the bytes asked for: ``got`` of ``wanted`` arrived."""

    def __init__(self, wanted: int, got: int) -> None:
        super().__init__(f"{got} of {wanted} bytes")
        self.wanted, self.got = wanted, got


def read_exact(stream: BinaryIO, size: int, chunk: int = CHUNK) -> bytearray:
    """Exactly ``size`` bytes of ``stream``, read in chunks: memory grows with the bytes that
    arrive, not with ``size``, so a header that claims more than a (compressed) stream holds costs
    nothing before :class:`ShortRead` says so."""
    data = bytearray()
    while len(data) < size:
        block = stream.read(min(chunk, size - len(data)))
        if not block:
            raise ShortRead(size, len(data))
        data += block
    return data


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
