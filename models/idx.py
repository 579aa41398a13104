"""The IDX container format (MNIST's own): parse and write, for the training data reader
(pipeline/data/idx.py) and for `dcgan balance` (models/datasets/readers.py) alike.

The header is read and checked on its own (:func:`read_header`) before any payload is allocated:
its dimensions are multiplied in Python integers (never wrapping), so a reader can refuse a claim
larger than its limits or the file before reading a byte of pixels (:func:`read_payload`)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from models.fileio import ShortRead, read_exact

# IDX type codes -> numpy dtypes (big-endian where multi-byte).
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
UBYTE = 0x08
INTEGER_CODES = frozenset({0x08, 0x09, 0x0B, 0x0C})


class IdxFormatError(ValueError):
    """The bytes are not a well-formed IDX file; the message names ``source``."""


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX header claims: the element type and the shape."""

    code: int  # the IDX type code (UBYTE for pixels)
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return np.dtype(_DTYPES[self.code])

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def payload_bytes(self) -> int:
        """The payload's size as claimed, in Python integers (no product wraps around)."""
        return math.prod(self.shape) * self.dtype.itemsize


def read_header(stream: BinaryIO, source: str = "<bytes>") -> IdxHeader:
    """The header at the start of ``stream``: magic number, type and dimensions."""
    try:
        magic = read_exact(stream, 4)
    except ShortRead:
        raise IdxFormatError(f"{source}: not an IDX file (bad magic number: too short)") from None
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
        raise IdxFormatError(f"{source}: not an IDX file (bad magic number)")
    try:
        dims = read_exact(stream, 4 * magic[3])
    except ShortRead:
        raise IdxFormatError(f"{source}: truncated IDX header") from None
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(magic[3]))
    return IdxHeader(magic[2], shape)


def read_payload(stream: BinaryIO, header: IdxHeader, source: str = "<bytes>") -> np.ndarray:
    """The array ``header`` describes, read from ``stream`` (positioned after the header) in
    chunks, so memory follows the bytes that arrive, not the claim; the stream must end there."""
    try:
        data = read_exact(stream, header.payload_bytes)
    except ShortRead as short:
        raise IdxFormatError(
            f"{source}: IDX size mismatch: header says {header.header_bytes + header.payload_bytes}"
            f" bytes, file has {header.header_bytes + short.got}"
        ) from None
    if stream.read(1):
        raise IdxFormatError(
            f"{source}: IDX size mismatch: more bytes than the header's "
            f"{header.header_bytes + header.payload_bytes}"
        )
    array = np.frombuffer(data, dtype=header.dtype).reshape(header.shape)
    return array.astype(header.dtype.newbyteorder("="))


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array, checking the header against the payload size."""
    stream = io.BytesIO(data)
    header = read_header(stream, source)
    expected = header.header_bytes + header.payload_bytes
    if len(data) != expected:
        raise IdxFormatError(
            f"{source}: IDX size mismatch: header says {expected} bytes, file has {len(data)}"
        )
    return read_payload(stream, header, source)


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (values 0..255) as an unsigned-byte IDX file."""
    header = bytes([0, 0, UBYTE, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
