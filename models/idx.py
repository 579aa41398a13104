"""The IDX container format (MNIST's own): parse and write, for the training data reader
(pipeline/data/idx.py) and for `dcgan balance` (serving/datasets.py) alike."""

from __future__ import annotations

import numpy as np

# IDX type codes -> numpy dtypes (big-endian where multi-byte).
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
UBYTE = 0x08


class IdxFormatError(ValueError):
    """The bytes are not a well-formed IDX file; the message names ``source``."""


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array, checking the header against the payload size."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise IdxFormatError(f"{source}: not an IDX file (bad magic number)")
    dtype = np.dtype(_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{source}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise IdxFormatError(
            f"{source}: IDX size mismatch: header says {expected} bytes, file has {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (values 0..255) as an unsigned-byte IDX file."""
    header = bytes([0, 0, UBYTE, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
