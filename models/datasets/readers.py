"""Reading a labelled image dataset nobody vouches for, in the formats people keep them in.

Formats, told apart by what PATH is:

- **ImageFolder**: a directory with one sub-directory per class, named by the class index
  (``0`` .. ``9``), holding PNG or JPEG images.
- **npz**: a ``.npz`` file with ``images`` (uint8, N x H x W or N x 1 x H x W) and ``labels``.
- **IDX** (MNIST's own): the ``*images-idx3-ubyte`` file (gzipped or not); its labels are the
  ``*labels-idx1-ubyte`` file beside it.
- **Hugging Face**: a ``.parquet`` file, or a ``Dataset.save_to_disk`` directory
  (models/datasets/hf.py; the ``hf`` extra).

Every header (an image's size and mode, an IDX header, a ``.npy`` header inside the zip) is
checked against the model's shape (:class:`Expect`) and the limits before anything is decoded or
allocated, and compressed data is read in chunks up to what the header claims, so a small file
cannot take large memory. Links and special files are refused (models/datasets/files.py). Every
malformed dataset ends in one :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import stat
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, cast

import numpy as np
from PIL import Image

from models.contract import NUM_CLASSES
from models.datasets.files import (
    DatasetLimits,
    Tree,
    lstat,
    open_regular,
    read_file,
    refused,
    require_kind,
    resolve,
    walk,
)
from models.datasets.npz import read_npz
from models.errors import DatasetError
from models.idx import INTEGER_CODES, UBYTE, IdxFormatError, IdxHeader, read_header, read_payload

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
DECODERS = ("PNG", "JPEG")  # never another of Pillow's parsers, whatever a file's suffix says
IDX_IMAGES, IDX_LABELS = "images-idx3-ubyte", "labels-idx1-ubyte"
# The in-place journal and staging (serving/tools/dataset_journal.py).
OWN_PREFIX = ".dcgan-balance-"
CLASS_FOLDER = re.compile(r"[0-9]+")


class Format(StrEnum):
    IMAGEFOLDER = "imagefolder"
    NPZ = "npz"
    IDX = "idx"
    PARQUET = "parquet"  # Hugging Face's, as the Hub serves datasets (models/datasets/hf.py)
    HF_DISK = "hf-disk"  # a Hugging Face Dataset.save_to_disk directory


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset as read: uint8 images (N, H, W), int64 labels (N,)."""

    path: Path
    format: Format
    images: np.ndarray
    labels: np.ndarray
    tree: Tree | None = None  # an ImageFolder's files, checked (what --out copies)
    native: Any = field(default=None, repr=False)  # a Hugging Face dataset, kept for writing

    def counts(self, num_classes: int) -> list[int]:
        return [int(n) for n in np.bincount(self.labels, minlength=num_classes)]


@dataclass(frozen=True)
class Expect:
    """What the model makes, and the limits: what every header is checked against."""

    num_classes: int = NUM_CLASSES
    image_size: int | None = None  # None: any size up to limits.max_side (an output read back)
    limits: DatasetLimits = field(default_factory=DatasetLimits)

    def image(self, height: int, width: int, origin: object) -> None:
        """Refuse an image of this size before it is decoded."""
        size = self.image_size
        if size is not None and (height, width) != (size, size):
            raise refused(
                f"{origin}: images are ({height}, {width}), the model makes {size}x{size}"
            )
        if max(height, width) > self.limits.max_side:
            raise refused(f"{origin}: {width}x{height} pixels, more than the limit's side")

    def images(self, count: int, height: int, width: int, origin: object) -> None:
        """Refuse ``count`` images of this size before they are read."""
        self.image(height, width, origin)
        if count > self.limits.max_images:
            raise refused(
                f"{origin}: {count} images, more than the limit of {self.limits.max_images}"
            )
        if count * height * width > self.limits.max_pixel_bytes:
            raise refused(
                f"{origin}: {count * height * width} bytes of pixels, more than the "
                f"limit of {self.limits.max_pixel_bytes}"
            )


def hf_reader() -> ModuleType:
    """models/datasets/hf.py, imported when first needed (it imports this module)."""
    from models.datasets import hf as module

    return module


def detect(path: Path) -> Format:
    st = lstat(path)
    if st is None:
        raise refused(f"{path}: no such file or directory")
    if stat.S_ISDIR(st.st_mode):
        return Format.HF_DISK if hf_reader().is_saved_dataset(path) else Format.IMAGEFOLDER
    if path.suffix == ".npz":
        return Format.NPZ
    if path.suffix == ".parquet":
        return Format.PARQUET
    if IDX_IMAGES in path.name:
        return Format.IDX
    raise refused(
        f"{path}: not a dataset this reads (an ImageFolder or save_to_disk directory, a .npz, "
        f"a .parquet, or an *{IDX_IMAGES} file)"
    )


def read_dataset(
    path: Path,
    num_classes: int = NUM_CLASSES,
    image_size: int | None = None,
    limits: DatasetLimits | None = None,
) -> Dataset:
    """Read ``path`` (format detected), checking every header against ``image_size`` (the
    model's; None: any size within the limits) and every label against ``num_classes``."""
    expect = Expect(num_classes, image_size, limits or DatasetLimits())
    path = resolve(path)
    fmt = detect(path)
    tree, native = None, None
    if fmt is Format.IMAGEFOLDER:
        tree = walk(path, expect.limits, skip=lambda name: name.startswith(OWN_PREFIX))
        images, labels = _read_imagefolder(tree, expect)
    elif fmt in (Format.PARQUET, Format.HF_DISK):
        images, labels, native = hf_reader().read(path, expect)
    elif fmt is Format.NPZ:
        images, labels = read_npz(path, expect)
    else:
        images, labels = _read_idx(path, expect)
    if len(images) != len(labels):
        raise refused(f"{path}: {len(images)} images but {len(labels)} labels")
    return Dataset(path, fmt, images, checked_labels(labels, num_classes, path), tree, native)


def checked_labels(labels: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise refused(f"{path}: labels must be one integer per image")
    unknown = labels[(labels < 0) | (labels >= num_classes)]
    if unknown.size:
        raise refused(
            f"{path}: unknown label {int(unknown[0])} (the model knows 0..{num_classes - 1})"
        )
    return labels.astype(np.int64)


def decode_gray(data: bytes, origin: object, expect: Expect) -> np.ndarray:
    """The pixels of one 8-bit grayscale PNG or JPEG; its size and mode are checked from the
    header, before the pixels are decompressed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=DECODERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise refused(f"{origin}: refused before decoding ({exc})") from None
    except Exception as exc:  # Pillow parses untrusted bytes: whatever it raises, unreadable
        raise refused(f"{origin}: not a readable image ({exc})") from None
    with image:
        if image.mode != "L":
            raise refused(f"{origin}: mode {image.mode}, not 8-bit grayscale (L)")
        width, height = image.size
        expect.image(height, width, origin)
        try:
            image.load()
            return np.asarray(image, dtype=np.uint8)
        except Exception as exc:  # a truncated or corrupt stream, found while decoding
            raise refused(f"{origin}: not a readable image ({exc})") from None


def stack_same_shape(images: list[np.ndarray], origins: list[str], where: Path) -> np.ndarray:
    """The images as one (N, H, W) array; DatasetError naming the first of another shape."""
    if not images:
        raise refused(f"{where}: no images")
    for pixels, origin in zip(images, origins, strict=True):
        if pixels.shape != images[0].shape:
            raise refused(
                f"{origin}: {pixels.shape}, the others are {images[0].shape}: mixed shapes"
            )
    return np.stack(images)


def _read_imagefolder(tree: Tree, expect: Expect) -> tuple[np.ndarray, np.ndarray]:
    root, limits = tree.root, expect.limits
    files = [
        rel
        for rel, _ in tree.files
        if len(rel.parts) == 2
        and not rel.parts[0].startswith(".")
        and rel.suffix.lower() in IMAGE_SUFFIXES
    ]
    for folder in sorted({rel.parts[0] for rel in files}):
        if not CLASS_FOLDER.fullmatch(folder) or int(folder) >= expect.num_classes:
            raise refused(
                f"{root}: unknown label folder {folder!r} (folders are class indices "
                f"0..{expect.num_classes - 1})"
            )
    if not files:
        raise refused(f"{root}: no class folders with PNG or JPEG images")
    if expect.image_size is not None:
        expect.images(len(files), expect.image_size, expect.image_size, root)
    elif len(files) > limits.max_images:
        raise refused(f"{root}: {len(files)} images, more than the limit of {limits.max_images}")
    images, origins, pixels_read = [], [], 0
    for rel in sorted(files, key=lambda rel: rel.parts):
        origin = root / rel
        pixels = decode_gray(read_file(origin, limits.max_image_file_bytes), origin, expect)
        pixels_read += pixels.size
        if pixels_read > limits.max_pixel_bytes:
            raise refused(f"{root}: more than {limits.max_pixel_bytes} bytes of pixels")
        images.append(pixels)
        origins.append(str(origin))
    labels = np.asarray([int(rel.parts[0]) for rel in sorted(files, key=lambda r: r.parts)])
    return stack_same_shape(images, origins, root), labels


def idx_labels_path(images: Path) -> Path:
    return images.with_name(images.name.replace(IDX_IMAGES, IDX_LABELS))


@contextlib.contextmanager
def _idx_stream(path: Path, limit: int) -> Iterator[BinaryIO]:
    """``path``'s IDX bytes as a stream: gunzipped as they are read when it is gzipped."""
    with open_regular(path, limit) as (raw, _):
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not gzipped:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            yield cast(BinaryIO, unzipped)


def _idx_array(path: Path, expect: Expect, check: Any) -> np.ndarray:
    """The array of one IDX file, its header passed to ``check`` before the payload is read."""
    limit = expect.limits.max_file_bytes
    try:
        with _idx_stream(path, limit) as stream:
            header = read_header(stream, str(path))
            check(header)
            return read_payload(stream, header, str(path))
    except IdxFormatError as exc:
        raise refused(str(exc)) from None
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise refused(f"{path}: cannot read ({exc})") from None


def _read_idx(path: Path, expect: Expect) -> tuple[np.ndarray, np.ndarray]:
    labels_path = idx_labels_path(path)
    st = lstat(labels_path)
    if st is None:
        raise refused(f"{path}: its labels file {labels_path.name} is not beside it")
    require_kind(labels_path, st, stat.S_ISREG, "regular file")

    def images_header(header: IdxHeader) -> None:
        if len(header.shape) != 3:
            raise refused(f"{path}: {len(header.shape)} dimension(s) where 3 belong")
        if header.code != UBYTE:
            raise refused(f"{path}: images are {header.dtype}, not 8-bit (uint8) grayscale")
        expect.images(*header.shape, path)

    images = _idx_array(path, expect, images_header)

    def labels_header(header: IdxHeader) -> None:
        if len(header.shape) != 1:
            raise refused(f"{labels_path}: {len(header.shape)} dimension(s) where 1 belong")
        if header.code not in INTEGER_CODES:
            raise refused(f"{labels_path}: labels must be one integer per image")
        if header.shape[0] != len(images):
            raise refused(f"{path}: {len(images)} images but {header.shape[0]} labels")

    return images, _idx_array(labels_path, expect, labels_header).astype(np.int64)


def raise_as_dataset_error(exc: Exception, origin: object) -> DatasetError:
    """A library's exception on untrusted bytes as the one-line DatasetError."""
    if isinstance(exc, DatasetError):
        return exc
    return refused(f"{origin}: not readable ({type(exc).__name__}: {exc})")
