"""Hostile datasets for the `dcgan balance` tests (issue 29): a scene (a small valid dataset in
any format beside a sentinel tree holding a secret), the command run in-process through the CLI's
entry point, tree snapshots that never follow a link, and crafted bytes (PNG, .npy, IDX headers
that claim any size; gzip and deflate streams that inflate to any size from a few KB)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import stat
import struct
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from unittest.mock import patch

import datasets
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from numpy.lib import format as npy
from PIL import Image, PngImagePlugin

from models.idx import idx_bytes

SECRET = b"SECRET-7f3a9c-never-in-any-output"
SIZE = 28
FORMATS = ("imagefolder", "npz", "idx", "idx-gz", "parquet", "hf-disk")
MAX_GROWTH_KB = 256 * 1024  # this process's peak RSS may not grow more in one run
HOSTILE = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def counts(data: st.DataObject, most: int = 3) -> list[int]:
    """Images per class of a hostile dataset: 0..``most`` each, at least one in all."""
    drawn: list[int] = data.draw(st.lists(st.integers(0, most), min_size=10, max_size=10))
    drawn[0] = drawn[0] or int(not any(drawn))
    return drawn


def run_cli(*args: str) -> tuple[int, str, str]:
    """`dcgan ARGS` through the console entry point (pipeline/cli.py:main), in this process."""
    from pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        patch.object(sys, "argv", ["dcgan", *args]),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``, links not followed: a link's text, a file's sha256."""
    entries: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            st_ = os.lstat(path)
            key = str(path.relative_to(root))
            if stat.S_ISLNK(st_.st_mode):
                entries[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(st_.st_mode):
                entries[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                entries[key] = ("other", stat.S_IFMT(st_.st_mode))
    return entries


# --- valid pieces ---------------------------------------------------------------------------


def png(pixels: np.ndarray | None = None, mode: str = "L", text: bytes = b"") -> bytes:
    image = Image.fromarray(pixels) if pixels is not None else Image.new(mode, (SIZE, SIZE))
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("note", text.decode())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def png_claiming(width: int, height: int, rows: int = 1) -> bytes:
    """A grayscale PNG whose header claims ``width`` x ``height``, with ``rows`` rows of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(bytes((min(width, 1 << 16) + 1) * rows))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def hf_rows(images: np.ndarray, labels: np.ndarray) -> datasets.Dataset:
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(k) for k in range(10)])}
    )
    rows = {"image": [{"bytes": png(p), "path": None} for p in images], "label": labels}
    return datasets.Dataset.from_dict(rows, features=features)


@cache
def evil_saved() -> dict[str, bytes]:
    """A save_to_disk dataset (file name -> bytes) whose one image carries SECRET."""
    with tempfile.TemporaryDirectory() as tmp:
        features = datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=list("0123456789"))}
        )
        rows = {"image": [{"bytes": png(text=SECRET), "path": None}], "label": [7]}
        datasets.Dataset.from_dict(rows, features=features).save_to_disk(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir()}


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_claiming(shape: tuple[int, ...], descr: str, payload: bytes) -> bytes:
    """A .npy file whose header (magic included) claims ``shape``, followed by ``payload``."""
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def write_npz(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)


# --- the scene: a sentinel tree beside the dataset -----------------------------------------


@dataclass
class Scene:
    work: Path
    outside: Path  # the sentinel tree: nothing in it may change
    data: Path  # the dataset's directory
    path: Path  # what `dcgan balance` is given
    fmt: str
    images: np.ndarray
    labels: np.ndarray

    @property
    def out(self) -> Path:
        return self.work / "out"


def build(work: Path, fmt: str, counts: list[int]) -> Scene:
    outside = work / "outside"
    (outside / "victim").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "victim" / "keep.png").write_bytes(png(text=SECRET))
    (outside / "evil").mkdir()
    for name, content in evil_saved().items():
        (outside / "evil" / name).write_bytes(content)
    labels = np.repeat(np.arange(10), counts).astype(np.int64)
    images = (np.arange(len(labels) * SIZE * SIZE) % 251).astype(np.uint8).reshape(-1, SIZE, SIZE)
    data = work / "data"
    data.mkdir()
    path = data
    if fmt == "imagefolder":
        for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            (data / str(label)).mkdir(exist_ok=True)
            (data / str(label) / f"real-{i:03d}.png").write_bytes(png(pixels))
    elif fmt == "npz":
        path = data / "train.npz"
        write_npz(path, {"images": npy_bytes(images), "labels": npy_bytes(labels)})
    elif fmt in ("idx", "idx-gz"):
        pack: Callable[[bytes], bytes] = gz if fmt == "idx-gz" else (lambda raw: raw)
        suffix = ".gz" if fmt == "idx-gz" else ""
        path = data / f"train-images-idx3-ubyte{suffix}"
        path.write_bytes(pack(idx_bytes(images)))
        (data / f"train-labels-idx1-ubyte{suffix}").write_bytes(pack(idx_bytes(labels)))
    elif fmt == "parquet":
        path = data / "train.parquet"
        hf_rows(images, labels).to_parquet(str(path))
    else:
        hf_rows(images, labels).save_to_disk(str(data))
    return Scene(work, outside, data, path, fmt, images, labels)


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


# --- decompression bombs: a few KB to a few hundred KB on disk, gigabytes inflated ----------

BOMB_IMAGES = 16384 * 90  # 1,474,560 images of 28x28: 1.16 GB of pixels, over every limit
SEGMENT = 16384 * SIZE * SIZE  # zero bytes per flushed deflate segment (12.8 MB)


@cache
def _zero_segment(size: int = SEGMENT) -> bytes:
    """Raw deflate of ``size`` zero bytes, fully flushed: copies concatenate into one stream."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(size)) + compressor.flush(zlib.Z_FULL_FLUSH)


def _raw_deflate(head: bytes, zero_segments: int, size: int = SEGMENT) -> tuple[bytes, int, int]:
    """(raw deflate, crc32, length) of ``head`` followed by ``zero_segments`` x ``size`` zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    body += _zero_segment(size) * zero_segments + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc, zeros = zlib.crc32(head), bytes(size)
    for _ in range(zero_segments):
        crc = zlib.crc32(zeros, crc)
    return body, crc, len(head) + zero_segments * size


def idx_gzip_bomb() -> tuple[bytes, bytes]:
    """A gzipped IDX pair whose images inflate to 1.16 GB from about 1.5 MB (gzip members)."""
    dims = (BOMB_IMAGES, SIZE, SIZE)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in dims)
    member = gzip.compress(bytes(SEGMENT), compresslevel=9, mtime=0)
    images = gzip.compress(header, mtime=0) + member * (BOMB_IMAGES // 16384)
    return images, gzip.compress(idx_bytes(np.zeros(BOMB_IMAGES, np.uint8)), mtime=0)


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of already deflated members (name, raw deflate, crc32, length)."""
    out, central = bytearray(), bytearray()
    for name, data, crc, length in members:
        offset, encoded = len(out), name.encode()
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), length, len(encoded), 0
        )
        out += encoded + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            *(0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), length, len(encoded)),
            *(0, 0, 0, 0, 0, offset),
        )
        central += encoded
    count = len(members)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(out), 0)
    return bytes(out + central + end)


def npz_bomb() -> bytes:
    """A .npz of about 1.2 MB whose images inflate to 1.16 GB, valid to the last CRC."""
    header = npy_claiming((BOMB_IMAGES, SIZE, SIZE), "|u1", b"")
    labels = npy_bytes(np.zeros(BOMB_IMAGES, np.uint8))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = compressor.compress(labels) + compressor.flush()
    return _zip(
        [
            ("images.npy", *_raw_deflate(header, BOMB_IMAGES // 16384)),
            ("labels.npy", packed, zlib.crc32(labels), len(labels)),
        ]
    )


def png_bomb(side: int = 12000) -> bytes:
    """A valid all-black grayscale PNG of ``side`` x ``side`` (144 M pixels) in about 140 KB."""
    row = side + 1  # the filter byte, then the pixels
    rows_per_segment = 500
    segments = side // rows_per_segment
    raw, _, length = _raw_deflate(b"", segments, row * rows_per_segment)
    adler, zeros = 1, bytes(row * rows_per_segment)
    for _ in range(segments):
        adler = zlib.adler32(zeros, adler)
    stream = b"\x78\xda" + raw + struct.pack(">I", adler)
    assert length == row * side

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )
