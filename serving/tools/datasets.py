"""Labelled image datasets on disk, written back with generated images added (what
`dcgan balance` does); reading is models/datasets/readers.py, re-exported here, and what each
generated image says about itself (provenance, metadata.jsonl rows, the card) is
serving/tools/provenance.py.

The output is a new directory, built under a temporary, locked name beside it and renamed into
place whole, so no half-written dataset is ever visible: the source's regular files (copied; no
link is followed), the generated images in the same format, ``metadata.jsonl`` (one line per
generated image: file, label, model, version, seed, filter, and the training recipe's
``synthetic``/``loss_weight``) and a dataset card, ``README.md``, with the real and filled counts
and how to train on them (models/datasets/recipe.py), naming the dataset by its escaped name only
(no absolute path). Generated PNGs carry their provenance in an XMP packet (IPTC
``DigitalSourceType`` = trainedAlgorithmicMedia) and text chunks (model, version, seed).
``--in-place`` goes through serving/tools/dataset_journal.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.datasets.files import (
    DatasetLimits,
    Staging,
    copy_tree,
    json_object,
    lstat,
    read_file,
    refused,
    remove_stale,
)
from models.datasets.readers import (
    Dataset,
    Format,
    decode_gray,
    detect,
    idx_labels_path,
    read_dataset,
    stack_same_shape,
)
from models.datasets.recipe import GENERATED_FIELDS
from models.idx import idx_bytes
from models.registry.names import is_id
from serving.tools.dataset_journal import (
    CARD_NAME,
    METADATA_NAME,
    OWN_README_CARD_NAME,
    PENDING_NAME,
    STAGING_PREFIX,
    finish_pending,
    write_journal,
)
from serving.tools.provenance import (
    SOURCE_TYPE,
    TRAINED_ALGORITHMIC_MEDIA,
    Provenance,
    card,
    card_name,
    has_our_card,
    metadata_lines,
    png_bytes,
)

__all__ = [
    "CARD_NAME",
    "METADATA_NAME",
    "OWN_README_CARD_NAME",
    "PENDING_NAME",
    "TRAINED_ALGORITHMIC_MEDIA",
    "Dataset",
    "DatasetLimits",
    "Format",
    "Provenance",
    "add_in_place",
    "decode_gray",
    "detect",
    "finish_pending",
    "png_bytes",
    "read_dataset",
    "require_in_place",
    "stack_same_shape",
    "write_balanced",
]


def _is_generated(row: dict[str, Any]) -> bool:
    """A metadata.jsonl row of a generated image (ours, or one a dataset marks synthetic)."""
    return row.get("synthetic") is True or row.get("digital_source_type") == SOURCE_TYPE


def _generated_counts(lines: Sequence[str], num_classes: int) -> list[int]:
    """Generated images per class listed in ``lines`` (a label out of range is not counted)."""
    counts = [0] * num_classes
    for line in lines:
        row = json_object(line, METADATA_NAME)
        label = row.get("label")
        if _is_generated(row) and type(label) is int and 0 <= label < num_classes:
            counts[label] += 1
    return counts


def _prior_lines(source: Dataset, limits: DatasetLimits) -> list[str]:
    """The lines of the dataset's metadata.jsonl, kept: an ImageFolder's own (Hugging Face's
    ImageFolder convention) or ours; beside a .npz or IDX file only where we wrote it. A row
    of ours written before the recipe's fields existed gets them."""
    directory = (
        source.path
        if source.format in (Format.IMAGEFOLDER, Format.HF_DISK)
        else (source.path.parent)
    )
    metadata = directory / METADATA_NAME
    if lstat(metadata) is None:
        return []
    if source.format is not Format.IMAGEFOLDER and not has_our_card(directory):
        return []
    try:
        text = read_file(metadata, limits.max_file_bytes).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refused(f"{metadata}: not UTF-8 ({exc})") from None
    lines = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        row = json_object(line, f"{metadata} line {number}")
        if row.get("digital_source_type") == SOURCE_TYPE and "synthetic" not in row:
            try:
                line = json.dumps({**row, **GENERATED_FIELDS})
            except RecursionError:
                raise refused(f"{metadata} line {number}: nested too deeply") from None
        lines.append(line.rstrip("\r"))
    return lines


# --- writing ------------------------------------------------------------------------------


def _write_pngs(
    stage: Path,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
    taken: Path,
    progress: bool,
) -> list[str]:
    """The generated images as PNGs in ``stage``'s class folders; names already used under
    ``taken`` (the dataset) are refused, never overwritten. Their metadata lines."""
    if not is_id(provenance.version):  # it becomes part of a file name
        raise refused(f"version {provenance.version!r}: not a version id; nothing written")
    names = []
    pairs = enumerate(zip(images, labels, strict=True))
    for index, (pixels, label) in tqdm(
        pairs, total=len(images), desc="writing", unit="img", disable=not progress
    ):
        name = f"{label}/dcgan-{provenance.version}-{provenance.seed}-{index:06d}.png"
        if lstat(taken / name) is not None:
            raise refused(f"{taken / name}: exists; balance with another --seed")
        (stage / str(label)).mkdir(exist_ok=True)
        with (stage / name).open("xb") as file:
            file.write(png_bytes(pixels, provenance, index))
        names.append(name)
    return metadata_lines(names, labels, provenance)


def _write_records(
    stage: Path,
    source: Dataset,
    lines: list[str],
    labels: np.ndarray,
    provenance: Provenance,
    num_classes: int,
) -> None:
    """metadata.jsonl and the card, for ``source`` plus generated images of ``labels``; the
    card's real counts leave out every generated row ``lines`` lists (an earlier run's too)."""
    (stage / METADATA_NAME).write_text("".join(line + "\n" for line in lines))
    before = source.counts(num_classes)
    added = np.bincount(labels, minlength=num_classes)
    after = [b + int(n) for b, n in zip(before, added, strict=True)]
    generated = _generated_counts(lines, num_classes)
    real = [max(0, a - g) for a, g in zip(after, generated, strict=True)]
    text = card(source, real, after, provenance)
    name = card_name(source.path) if source.format is Format.IMAGEFOLDER else CARD_NAME
    (stage / name).write_text(text)


def _write_arrays(stage: Path, source: Dataset, images: np.ndarray, labels: np.ndarray) -> str:
    """A .npz or IDX source plus the generated rows, under ``stage``; the data file's name."""
    all_images = np.concatenate([source.images, images])
    all_labels = np.concatenate([source.labels, labels.astype(np.int64)])
    if source.format is Format.NPZ:
        name = source.path.name
        np.savez_compressed(stage / name, images=all_images, labels=all_labels)
    else:
        name = source.path.name.removesuffix(".gz")
        (stage / name).write_bytes(idx_bytes(all_images))
        (stage / idx_labels_path(Path(name)).name).write_bytes(idx_bytes(all_labels))
    return name


def write_balanced(
    source: Dataset,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
    out: Path,
    num_classes: int,
    *,
    progress: bool = False,
    limits: DatasetLimits | None = None,
) -> None:
    """``source`` plus the generated ``images``/``labels``, in its format, as the new ``out``;
    what a killed run left beside ``out`` is removed first."""
    limits = limits or DatasetLimits()
    if os.path.lexists(out):
        raise refused(f"{out}: exists; give --out a new directory")
    lines = _prior_lines(source, limits)  # a dataset balanced before keeps its generated rows
    prefix = f".{out.name}.tmp-"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out.parent, prefix)
        with Staging(out.parent, prefix) as staging:
            stage = staging.path
            if source.format is Format.IMAGEFOLDER:
                assert source.tree is not None  # read_dataset walked it
                copy_tree(source.tree, stage)
                lines += _write_pngs(stage, images, labels, provenance, source.path, progress)
            elif source.format in (Format.PARQUET, Format.HF_DISK):
                from serving.tools import (
                    hf_datasets,  # needs the optional `datasets`; imports this module
                )

                names = hf_datasets.write(source, stage, images, labels, provenance)
                lines += metadata_lines(names, labels, provenance)
            else:
                offset, name = len(source.images), _write_arrays(stage, source, images, labels)
                rows = [f"{name}#{offset + i}" for i in range(len(labels))]
                lines += metadata_lines(rows, labels, provenance)
            _write_records(stage, source, lines, labels, provenance, num_classes)
            staging.commit(out)
    except OSError as exc:
        raise refused(f"{out}: cannot write ({exc})") from None


def require_in_place(dataset: Dataset | Format, path: Path | None = None) -> None:
    """DatasetError unless the dataset can be added to in place (an ImageFolder)."""
    fmt = dataset.format if isinstance(dataset, Dataset) else dataset
    where = dataset.path if isinstance(dataset, Dataset) else path
    if fmt is not Format.IMAGEFOLDER:
        raise refused(
            f"{where}: --in-place adds to ImageFolder datasets only; give --out for {fmt} files"
        )


def add_in_place(
    source: Dataset,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
    num_classes: int,
    *,
    progress: bool = False,
    limits: DatasetLimits | None = None,
) -> None:
    """Add the generated images to an ImageFolder itself, journaled
    (serving/tools/dataset_journal.py): staged in a hidden, locked directory that one rename
    commits, then moved into place."""
    require_in_place(source)
    root = source.path
    if lstat(root / PENDING_NAME) is not None:
        raise refused(f"{root / PENDING_NAME}: an unfinished balance; finish it first")
    try:
        with Staging(root, STAGING_PREFIX) as staging:
            lines = _prior_lines(source, limits or DatasetLimits())
            lines += _write_pngs(staging.path, images, labels, provenance, root, progress)
            _write_records(staging.path, source, lines, labels, provenance, num_classes)
            write_journal(staging.path, root)
            staging.commit(root / PENDING_NAME)  # the commit point
    except OSError as exc:
        raise refused(f"{root}: cannot stage the images ({exc}); nothing was changed") from None
    try:
        finish_pending(root, limits)
    except OSError as exc:
        raise refused(f"{root}: moving images in stopped ({exc}); run again to finish") from None
