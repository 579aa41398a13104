"""A ``.npz`` dataset, read as untrusted input: each array's ``.npy`` header is read from its zip
member and checked (dtype, shape against the model's, size against the limits) before a byte of
the array is read, and the member is then decompressed in chunks up to the size its header
claims, never further. Object arrays (pickles) are never loaded."""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
from numpy.lib import format as npy

from models.datasets.files import open_regular, refused
from models.errors import DatasetError
from models.fileio import ShortRead, read_exact

if TYPE_CHECKING:
    from models.datasets.readers import Expect

HeaderCheck = Callable[[tuple[int, ...], np.dtype[Any]], None]
MAX_MEMBERS, MAX_DIRECTORY_BYTES = 64, 1 << 20  # np.savez writes one member per array
EOCD, ZIP64_LOCATOR, ZIP64_EOCD = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"


def _directory_size(stream: BinaryIO, size: int) -> tuple[int, int]:
    """(members, bytes) of the zip's central directory, from its end records: zipfile holds the
    whole directory in memory, so a zip of millions of empty members is refused before it."""
    tail_start = max(0, size - 22 - 0xFFFF)  # the end record, after at most a 64 KiB comment
    stream.seek(tail_start)
    tail = stream.read()
    at = tail.rfind(EOCD)
    if at < 0 or len(tail) < at + 22:
        raise ValueError("no zip end record")
    members, directory = struct.unpack_from("<HI", tail, at + 10)
    if members == 0xFFFF or directory == 0xFFFFFFFF:  # zip64: the real counts are elsewhere
        locator = at - 20
        if locator < 0 or tail[locator : locator + 4] != ZIP64_LOCATOR:
            raise ValueError("no zip64 end record locator")
        (record,) = struct.unpack_from("<Q", tail, locator + 8)
        stream.seek(record)
        head = stream.read(56)
        if len(head) < 56 or head[:4] != ZIP64_EOCD:
            raise ValueError("no zip64 end record")
        members, directory = struct.unpack_from("<QQ", head, 32)
    stream.seek(0)
    return members, directory


def _member(archive: zipfile.ZipFile, name: str, origin: str, check: HeaderCheck) -> np.ndarray:
    """The array in member ``name``, its header passed to ``check`` first."""
    with archive.open(name) as member:
        version = npy.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = npy.read_array_header_2_0(member)
        else:
            raise refused(f"{origin}: .npy format version {version} is not read (1.0 and 2.0 are)")
        if dtype.hasobject:
            raise refused(f"{origin}: an object array (a pickle); only numbers are read")
        check(shape, dtype)
        try:
            data = read_exact(cast(BinaryIO, member), math.prod(shape) * dtype.itemsize)
        except ShortRead as short:
            raise refused(f"{origin}: truncated ({short})") from None
        if member.read(1):
            raise refused(f"{origin}: longer than its header says")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_npz(path: Path, expect: Expect) -> tuple[np.ndarray, np.ndarray]:
    """``images`` (uint8, N x H x W or N x 1 x H x W) and ``labels`` (N integers) of ``path``."""
    with open_regular(path, expect.limits.max_file_bytes) as (stream, size):
        try:
            members_count, directory_bytes = _directory_size(stream, size)
            if members_count > MAX_MEMBERS or directory_bytes > MAX_DIRECTORY_BYTES:
                raise refused(
                    f"{path}: a zip of {members_count} members ({directory_bytes} bytes of "
                    f"directory); a .npz has a few"
                )
            with zipfile.ZipFile(stream) as archive:
                members = {name.removesuffix(".npy"): name for name in archive.namelist()}
                if not {"images", "labels"} <= set(members):
                    raise refused(
                        f"{path}: needs arrays 'images' and 'labels' (has {', '.join(members)})"
                    )
                images_origin = f"{path} images"
                images = _member(
                    archive, members["images"], images_origin, _images_check(expect, images_origin)
                )
                labels_origin = f"{path} labels"
                labels = _member(
                    archive, members["labels"], labels_origin, _labels_check(len(images), path)
                )
        except DatasetError:
            raise
        except Exception as exc:  # zipfile and numpy parse untrusted bytes: any error, unreadable
            raise refused(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    return (images[:, 0] if images.ndim == 4 else images), labels


def _images_check(expect: Expect, origin: str) -> HeaderCheck:
    def check(shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        if len(shape) == 4 and shape[1] == 1:
            shape = (shape[0], *shape[2:])
        if len(shape) != 3:
            raise refused(f"{origin}: images are {shape}, not (N, height, width)")
        if dtype != np.uint8:
            raise refused(f"{origin}: images are {dtype}, not 8-bit (uint8) grayscale")
        expect.images(*shape, origin)

    return check


def _labels_check(count: int, path: Path) -> HeaderCheck:
    def check(shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        if len(shape) != 1 or dtype.kind not in "iu":
            raise refused(f"{path}: labels must be one integer per image")
        if shape[0] != count:
            raise refused(f"{path}: {count} images but {shape[0]} labels")

    return check
