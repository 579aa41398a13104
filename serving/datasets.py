"""Labelled image datasets on disk, in the formats people keep them in: read, and written back with
generated images added (what `dcgan balance` does).

Formats, told apart by what PATH is:

- **ImageFolder**: a directory with one sub-directory per class, named by the class index
  (``0`` .. ``9``), holding PNG or JPEG images.
- **npz**: a ``.npz`` file with ``images`` (uint8, N x H x W or N x 1 x H x W) and ``labels``.
- **IDX** (MNIST's own): the ``*images-idx3-ubyte`` file (gzipped or not); its labels are the
  ``*labels-idx1-ubyte`` file beside it.
- **Hugging Face**: a ``.parquet`` file, or a ``Dataset.save_to_disk`` directory
  (serving/hf_datasets.py; the ``hf`` extra).

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
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError
from tqdm import tqdm

from models.contract import NUM_CLASSES
from models.idx import IdxFormatError, idx_bytes, parse_idx
from serving.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
METADATA_NAME, CARD_NAME = "metadata.jsonl", "README.md"
OWN_README_CARD_NAME = "BALANCE_CARD.md"  # the card, where the dataset has a README.md of its own
PENDING_NAME = ".dcgan-balance-pending"  # an in-place change, committed, being moved into place
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
IDX_IMAGES, IDX_LABELS = "images-idx3-ubyte", "labels-idx1-ubyte"


class Format(StrEnum):
    IMAGEFOLDER = "imagefolder"
    NPZ = "npz"
    IDX = "idx"
    PARQUET = "parquet"  # Hugging Face's, as the Hub serves datasets (serving/hf_datasets.py)
    HF_DISK = "hf-disk"  # a Hugging Face Dataset.save_to_disk directory


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
        return Format.HF_DISK if hf_datasets().is_saved_dataset(path) else Format.IMAGEFOLDER
    if path.suffix == ".npz":
        return Format.NPZ
    if path.suffix == ".parquet":
        return Format.PARQUET
    if IDX_IMAGES in path.name:
        return Format.IDX
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    raise DatasetError(
        f"{path}: not a dataset this reads (an ImageFolder or save_to_disk directory, a .npz, "
        f"a .parquet, or an *{IDX_IMAGES} file)"
    )


def read_dataset(path: Path, num_classes: int = NUM_CLASSES) -> Dataset:
    """Read ``path`` (format detected) and check every image and label; before any model is
    asked, so a bad dataset costs nothing else (:func:`check_size` then checks the model's)."""
    fmt = detect(path)
    if fmt in (Format.PARQUET, Format.HF_DISK):
        images, labels = hf_datasets().read(path)
    else:
        reader = {
            Format.IMAGEFOLDER: _read_imagefolder,
            Format.NPZ: _read_npz,
            Format.IDX: _read_idx,
        }
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


def hf_datasets() -> ModuleType:
    """serving/hf_datasets.py, imported when first needed (it needs the optional `datasets`)."""
    from serving import hf_datasets as module

    return module


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
    """The array of an IDX file (gzipped or not) with ``dims`` dimensions."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    try:
        array = parse_idx(data, str(path))
    except IdxFormatError as exc:
        raise DatasetError(str(exc)) from None
    if array.ndim != dims:
        raise DatasetError(f"{path}: {array.ndim} dimension(s) where {dims} belong")
    return array


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


def decode_gray(image_file: Path | io.BytesIO, origin: str) -> np.ndarray:
    """The pixels of one 8-bit grayscale PNG or JPEG; DatasetError naming ``origin`` otherwise."""
    try:
        with Image.open(image_file) as image:
            if image.mode != "L":
                raise DatasetError(f"{origin}: mode {image.mode}, not 8-bit grayscale (L)")
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{origin}: not a readable image ({exc})") from None


def stack_same_shape(images: list[np.ndarray], origins: list[str], where: Path) -> np.ndarray:
    """The images as one (N, H, W) array; DatasetError naming the first of another shape."""
    if not images:
        raise DatasetError(f"{where}: no images")
    for pixels, origin in zip(images, origins, strict=True):
        if pixels.shape != images[0].shape:
            raise DatasetError(
                f"{origin}: {pixels.shape}, the others are {images[0].shape}: mixed shapes"
            )
    return np.stack(images)


def _read_imagefolder(root: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images: list[np.ndarray] = []
    origins: list[str] = []
    labels: list[int] = []
    for file, label in _imagefolder_files(root):
        if not label.isdigit() or int(label) >= num_classes:
            raise DatasetError(
                f"{root}: unknown label folder {label!r} (folders are class indices "
                f"0..{num_classes - 1})"
            )
        images.append(decode_gray(file, str(file)))
        origins.append(str(file))
        labels.append(int(label))
    if not images:
        raise DatasetError(f"{root}: no class folders with PNG or JPEG images")
    return stack_same_shape(images, origins, root), np.asarray(labels, dtype=np.int64)


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
    """The rows of the dataset's metadata.jsonl, kept: an ImageFolder's own (Hugging Face's
    ImageFolder convention) or ours; beside a .npz or IDX file only where we wrote it."""
    directory = source.path if source.path.is_dir() else source.path.parent
    metadata = directory / METADATA_NAME
    if not metadata.is_file():
        return []
    if source.format is not Format.IMAGEFOLDER and not _has_our_card(directory):
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


def _has_our_card(directory: Path) -> bool:
    readme = directory / CARD_NAME
    return readme.is_file() and "`dcgan balance`" in readme.read_text(errors="replace")[:2000]


def _card_name(root: Path) -> str:
    """README.md, unless the dataset has a README of its own: that is kept, the card beside it."""
    if not (root / CARD_NAME).is_file() or _has_our_card(root):
        return CARD_NAME
    return OWN_README_CARD_NAME


def _write_pngs(
    stage: Path,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
    taken: Path,
    progress: bool,
) -> list[dict[str, Any]]:
    """The generated images as PNGs in ``stage``'s class folders; names already used under
    ``taken`` (the dataset) are refused, never overwritten. Their metadata rows."""
    rows = []
    pairs = enumerate(zip(images, labels, strict=True))
    for index, (pixels, label) in tqdm(
        pairs, total=len(images), desc="writing", unit="img", disable=not progress
    ):
        name = f"{label}/dcgan-{provenance.version}-{provenance.seed}-{index:06d}.png"
        if (taken / name).exists():
            raise DatasetError(f"{taken / name}: exists; balance with another --seed")
        (stage / str(label)).mkdir(exist_ok=True)
        with (stage / name).open("xb") as file:
            file.write(png_bytes(pixels, provenance, index))
        rows.append(_metadata_row(name, int(label), index, provenance))
    return rows


def _write_records(
    stage: Path,
    source: Dataset,
    rows: list[dict[str, Any]],
    labels: np.ndarray,
    provenance: Provenance,
    num_classes: int,
) -> None:
    """metadata.jsonl and the card, for ``source`` plus generated images of ``labels``."""
    (stage / METADATA_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows))
    before = source.counts(num_classes)
    added = np.bincount(labels, minlength=num_classes)
    after = [b + int(n) for b, n in zip(before, added, strict=True)]
    card = _card(source, before, after, provenance)
    name = _card_name(source.path) if source.format is Format.IMAGEFOLDER else CARD_NAME
    (stage / name).write_text(card)


def write_balanced(
    source: Dataset,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
    out: Path,
    num_classes: int,
    *,
    progress: bool = False,
) -> None:
    """``source`` plus the generated ``images``/``labels``, in its format, as the new ``out``."""
    if out.exists():
        raise DatasetError(f"{out}: exists; give --out a new directory")
    rows = _prior_rows(source)  # a dataset balanced before keeps its generated images' rows
    with _staged(out) as stage:
        if source.format is Format.IMAGEFOLDER:
            shutil.copytree(source.path, stage, dirs_exist_ok=True, symlinks=False)
            rows += _write_pngs(stage, images, labels, provenance, source.path, progress)
        elif source.format in (Format.PARQUET, Format.HF_DISK):
            names = hf_datasets().write(source.path, stage, images, labels, provenance)
            rows += [
                _metadata_row(name, int(label), i, provenance)
                for i, (name, label) in enumerate(zip(names, labels, strict=True))
            ]
        else:
            offset = len(source.images)
            all_images = np.concatenate([source.images, images])
            all_labels = np.concatenate([source.labels, labels.astype(np.int64)])
            if source.format is Format.NPZ:
                name = source.path.name
                np.savez_compressed(stage / name, images=all_images, labels=all_labels)
            else:
                name = source.path.name.removesuffix(".gz")
                (stage / name).write_bytes(idx_bytes(all_images))
                (stage / _idx_labels_path(Path(name)).name).write_bytes(idx_bytes(all_labels))
            rows += [
                _metadata_row(f"{name}#{offset + i}", int(label), i, provenance)
                for i, label in enumerate(labels)
            ]
        _write_records(stage, source, rows, labels, provenance, num_classes)


def require_in_place(dataset: Dataset) -> None:
    """DatasetError unless ``dataset`` can be added to in place (an ImageFolder)."""
    if dataset.format is not Format.IMAGEFOLDER:
        raise DatasetError(
            f"{dataset.path}: --in-place adds to ImageFolder datasets only; give --out for "
            f"{dataset.format} files"
        )


def add_in_place(
    source: Dataset,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
    num_classes: int,
    *,
    progress: bool = False,
) -> None:
    """Add the generated images to an ImageFolder itself, journaled: everything is staged in a
    hidden directory, which one rename makes the pending change (the commit point); then each
    file is moved into place (:func:`finish_pending`). A run interrupted after the commit point
    is finished by the next one; one interrupted before it left only a hidden directory."""
    require_in_place(source)
    root = source.path
    if (root / PENDING_NAME).exists():
        raise DatasetError(f"{root / PENDING_NAME}: an unfinished balance; finish it first")
    staging = Path(tempfile.mkdtemp(prefix=".dcgan-balance-tmp-", dir=root))
    try:
        rows = _prior_rows(source) + _write_pngs(
            staging, images, labels, provenance, root, progress
        )
        _write_records(staging, source, rows, labels, provenance, num_classes)
        os.rename(staging, root / PENDING_NAME)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finish_pending(root)


def finish_pending(root: Path) -> bool:
    """Move a committed in-place change's files into ``root``; False when there was none."""
    pending = root / PENDING_NAME
    if not pending.is_dir():
        return False
    for file in sorted(p for p in pending.rglob("*") if p.is_file()):
        target = root / file.relative_to(pending)
        target.parent.mkdir(exist_ok=True)
        os.replace(file, target)  # the card and metadata.jsonl replace the old ones
    shutil.rmtree(pending)
    return True
