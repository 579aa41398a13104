"""Labelled image datasets on disk, in the formats people keep them in: read, and written back with
generated images added (what `dcgan balance` does).

Formats, told apart by what PATH is:

- **ImageFolder**: a directory with one sub-directory per class, named by the class index
  (``0`` .. ``9``), holding PNG or JPEG images.
- **npz**: a ``.npz`` file with ``images`` (uint8, N x H x W or N x 1 x H x W) and ``labels``.
- **IDX** (MNIST's own): the ``*images-idx3-ubyte`` file (gzipped or not); its labels are the
  ``*labels-idx1-ubyte`` file beside it.

Images must be 8-bit grayscale of the model's size: a wrong size or mode, an unknown label or mixed
shapes raise :class:`DatasetError` with one line naming the file, before anything is written. The
output is a new directory, built under a temporary name beside it and renamed into place whole, so
no half-written dataset is ever visible: the source's files (copied), the generated images in the
same format, ``metadata.jsonl`` (one line per generated image: file, label, model, version, seed,
filter) and a dataset card, ``README.md``. Generated PNGs carry their provenance in an XMP packet
(IPTC ``DigitalSourceType`` = trainedAlgorithmicMedia) and text chunks (model, version, seed).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from models.contract import NUM_CLASSES
from serving.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
METADATA_NAME, CARD_NAME = "metadata.jsonl", "README.md"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
IDX_IMAGES, IDX_LABELS = "images-idx3-ubyte", "labels-idx1-ubyte"


class Format(StrEnum):
    IMAGEFOLDER = "imagefolder"
    NPZ = "npz"
    IDX = "idx"


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset as read: uint8 images (N, H, W), int64 labels (N,)."""

    path: Path
    format: Format
    images: np.ndarray
    labels: np.ndarray

    def counts(self, num_classes: int) -> list[int]:
        return [int(n) for n in np.bincount(self.labels, minlength=num_classes)]


@dataclass(frozen=True)
class Provenance:
    """Where generated images came from; stamped into every one and into the card."""

    model: str
    version: str
    seed: int
    source: str  # the service URL or the registry URI
    min_confidence: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


# --- reading ------------------------------------------------------------------------------


def detect(path: Path) -> Format:
    if path.is_dir():
        return Format.IMAGEFOLDER
    if path.suffix == ".npz":
        return Format.NPZ
    if IDX_IMAGES in path.name:
        return Format.IDX
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    raise DatasetError(
        f"{path}: not a dataset this reads (an ImageFolder directory, a .npz, or an "
        f"*{IDX_IMAGES} file)"
    )


def read_dataset(path: Path, num_classes: int = NUM_CLASSES) -> Dataset:
    """Read ``path`` (format detected) and check every image and label; before any model is
    asked, so a bad dataset costs nothing else (:func:`check_size` then checks the model's)."""
    fmt = detect(path)
    reader = {Format.IMAGEFOLDER: _read_imagefolder, Format.NPZ: _read_npz, Format.IDX: _read_idx}
    images, labels = reader[fmt](path, num_classes)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise DatasetError(f"{path}: images are {images.shape}, not (N, height, width)")
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: images are {images.dtype}, not 8-bit (uint8) grayscale")
    if len(images) != len(labels):
        raise DatasetError(f"{path}: {len(images)} images but {len(labels)} labels")
    labels = _checked_labels(labels, num_classes, path)
    return Dataset(path, fmt, images, labels)


def check_size(dataset: Dataset, image_size: int) -> None:
    """DatasetError unless the images are the model's size."""
    if dataset.images.shape[1:] != (image_size, image_size):
        raise DatasetError(
            f"{dataset.path}: images are {dataset.images.shape[1:]}, the model makes "
            f"{image_size}x{image_size}"
        )


def _checked_labels(labels: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: labels must be one integer per image")
    unknown = labels[(labels < 0) | (labels >= num_classes)]
    if unknown.size:
        raise DatasetError(
            f"{path}: unknown label {int(unknown[0])} (the model knows 0..{num_classes - 1})"
        )
    return labels.astype(np.int64)


def _read_npz(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"images", "labels"} - set(npz.files)
            if missing:
                raise DatasetError(
                    f"{path}: needs arrays 'images' and 'labels' (has {', '.join(npz.files)})"
                )
            return npz["images"], npz["labels"]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz ({exc})") from None


def _idx_labels_path(images: Path) -> Path:
    return images.with_name(images.name.replace(IDX_IMAGES, IDX_LABELS))


def _parse_idx(path: Path, dims: int) -> np.ndarray:
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 + 4 * dims or data[:3] != b"\0\0\x08" or data[3] != dims:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes with {dims} dimension(s)")
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: holds {body.size} bytes, its header says {shape}")
    return body.reshape(shape)


def _read_idx(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    labels = _idx_labels_path(path)
    if not labels.is_file():
        raise DatasetError(f"{path}: its labels file {labels.name} is not beside it")
    return _parse_idx(path, 3), _parse_idx(labels, 1).astype(np.int64)


def _imagefolder_files(root: Path) -> Iterator[tuple[Path, str]]:
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(directory.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES and not file.is_symlink():
                yield file, directory.name


def _read_imagefolder(root: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images: list[np.ndarray] = []
    labels: list[int] = []
    shape: tuple[int, ...] | None = None
    for file, label in _imagefolder_files(root):
        if not label.isdigit() or int(label) >= num_classes:
            raise DatasetError(
                f"{root}: unknown label folder {label!r} (folders are class indices "
                f"0..{num_classes - 1})"
            )
        try:
            with Image.open(file) as image:
                if image.mode != "L":
                    raise DatasetError(f"{file}: mode {image.mode}, not 8-bit grayscale (L)")
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"{file}: not a readable image ({exc})") from None
        if shape is not None and pixels.shape != shape:
            raise DatasetError(f"{file}: {pixels.shape}, the others are {shape}: mixed shapes")
        shape = pixels.shape
        images.append(pixels)
        labels.append(int(label))
    if not images:
        raise DatasetError(f"{root}: no class folders with PNG or JPEG images")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


# --- writing ------------------------------------------------------------------------------


def png_bytes(pixels: np.ndarray, provenance: Provenance, index: int) -> bytes:
    """A grayscale PNG stamped as machine-generated: XMP (IPTC) plus text chunks."""
    info = PngImagePlugin.PngInfo()
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'Iptc4xmpExt:DigitalSourceType="{TRAINED_ALGORITHMIC_MEDIA}"/></rdf:RDF></x:xmpmeta>'
    )
    info.add_itxt("XML:com.adobe.xmp", xmp)
    info.add_text("DigitalSourceType", TRAINED_ALGORITHMIC_MEDIA)
    info.add_text("dcgan:model", provenance.model)
    info.add_text("dcgan:version", provenance.version)
    info.add_text("dcgan:seed", f"{provenance.seed}:{index}")
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _metadata_row(file: str, label: int, index: int, provenance: Provenance) -> dict[str, Any]:
    return {
        "file_name": file,
        "label": label,
        "model": provenance.model,
        "version": provenance.version,
        "seed": provenance.seed,
        "index": index,  # position in the answer to that seed
        "min_confidence": provenance.min_confidence,
        "digital_source_type": "trainedAlgorithmicMedia",
    }


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _card(source: Dataset, before: Sequence[int], after: Sequence[int], p: Provenance) -> str:
    metrics = ", ".join(
        f"{key} {value:.4g}" for key, value in p.metrics.items() if isinstance(value, float)
    )
    rows = "\n".join(
        f"| {k} | {b} | {a} | {a - b} |" for k, (b, a) in enumerate(zip(before, after, strict=True))
    )
    return (
        "---\ntags:\n- synthetic\n- machine-generated\n---\n\n"
        f"# {source.path.name}, balanced\n\n"
        f"Machine-generated images were added to `{source.path}` ({source.format}) by "
        f"`dcgan balance`, so that every class has {max(after)} images. The added images are "
        "synthetic (IPTC digital source type: trainedAlgorithmicMedia); each is listed in "
        f"`{METADATA_NAME}`.\n\n"
        f"- Model: `{p.model}` version `{p.version}`, from {p.source}\n"
        f"- Seed: {p.seed}; classifier filter: "
        f"{'none' if p.min_confidence is None else f'min confidence {p.min_confidence}'}\n"
        f"- Model metrics: {metrics or 'not published'}\n\n"
        "| class | before | after | generated |\n|---|---|---|---|\n"
        f"{rows}\n"
    )


def _prior_rows(source: Dataset) -> list[dict[str, Any]]:
    directory = source.path if source.format is Format.IMAGEFOLDER else source.path.parent
    metadata = directory / METADATA_NAME
    if not metadata.is_file():
        return []
    try:
        return [json.loads(line) for line in metadata.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{metadata}: not readable JSON lines ({exc})") from None


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A temporary directory beside ``out``, renamed to ``out`` on success, removed otherwise."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield staging
        os.rename(staging, out)  # fails if out appeared meanwhile: nothing is overwritten
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_balanced(
    source: Dataset,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
    out: Path,
    num_classes: int,
) -> None:
    """``source`` plus the generated ``images``/``labels``, in its format, as the new ``out``."""
    if out.exists():
        raise DatasetError(f"{out}: exists; give --out a new directory")
    before = source.counts(num_classes)
    after = [
        b + int(n) for b, n in zip(before, np.bincount(labels, minlength=num_classes), strict=True)
    ]
    rows = _prior_rows(source)  # a dataset balanced before keeps its generated images' rows
    with _staged(out) as stage:
        if source.format is Format.IMAGEFOLDER:
            shutil.copytree(source.path, stage, dirs_exist_ok=True, symlinks=False)
            for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
                name = f"{label}/dcgan-{provenance.version}-{provenance.seed}-{index:06d}.png"
                (stage / str(label)).mkdir(exist_ok=True)
                try:
                    with (stage / name).open("xb") as file:  # never over a source image
                        file.write(png_bytes(pixels, provenance, index))
                except FileExistsError:
                    raise DatasetError(
                        f"{source.path / name}: exists; balance with another --seed"
                    ) from None
                rows.append(_metadata_row(name, int(label), index, provenance))
        else:
            offset = len(source.images)
            all_images = np.concatenate([source.images, images])
            all_labels = np.concatenate([source.labels, labels.astype(np.int64)])
            if source.format is Format.NPZ:
                name = source.path.name
                np.savez_compressed(stage / name, images=all_images, labels=all_labels)
            else:
                name = source.path.name.removesuffix(".gz")
                _write_idx(stage / name, all_images)
                _write_idx(stage / _idx_labels_path(Path(name)).name, all_labels)
            rows += [
                _metadata_row(f"{name}#{offset + i}", int(label), i, provenance)
                for i, label in enumerate(labels)
            ]
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (stage / METADATA_NAME).write_text(lines)
        (stage / CARD_NAME).write_text(_card(source, before, after, provenance))
