"""Labelled image datasets on disk, written back with generated images added (what
`dcgan balance` does); reading is models/datasets/readers.py, re-exported here.

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

import html
import io
import json
import os
import re
import stat
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin
from tqdm import tqdm

from models.datasets.files import (
    DatasetLimits,
    Staging,
    copy_tree,
    json_object,
    lstat,
    open_regular,
    read_file,
    refused,
    remove_stale,
    shown,
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
from models.datasets.recipe import GENERATED_FIELDS, how_to_train
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

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SOURCE_TYPE = "trainedAlgorithmicMedia"  # a generated row's digital_source_type in metadata.jsonl
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


@dataclass(frozen=True)
class Provenance:
    """Where generated images came from; stamped into every one and into the card."""

    model: str
    version: str
    seed: int
    source: str  # the service URL or the registry URI
    min_confidence: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


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


def metadata_lines(files: Sequence[str], labels: np.ndarray, provenance: Provenance) -> list[str]:
    """The metadata.jsonl lines of the answer's generated images, named ``files``: every
    format's and ``--in-place``'s, so each row has the same fields."""
    return [
        json.dumps(
            {
                "file_name": file,
                "label": int(label),
                "model": provenance.model,
                "version": provenance.version,
                "seed": provenance.seed,
                "index": i,  # position in the answer to that seed
                "min_confidence": provenance.min_confidence,
                "digital_source_type": SOURCE_TYPE,
                **GENERATED_FIELDS,  # the training recipe's: generated, and its loss weight
            }
        )
        for i, (file, label) in enumerate(zip(files, labels, strict=True))
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


# --- the card -----------------------------------------------------------------------------


def markdown(text: object) -> str:
    """``text`` as inert Markdown and HTML on one line: control characters shown escaped,
    Markdown's special characters backslash-escaped, ``<>&"'`` as entities."""
    return html.escape(MARKDOWN_SPECIAL.sub(r"\\\1", shown(text)), quote=True)


def public_source(uri: str) -> str:
    """Where the images came from, for the card: a URL without credentials, query or fragment;
    a local registry directory is not named (the card holds no local path)."""
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError:
        return "a registry"
    if parts.scheme in ("http", "https", "s3") and parts.hostname:
        return f"{parts.scheme}://{parts.hostname}{f':{port}' if port else ''}{parts.path}"
    return "a local registry"


def _card(source: Dataset, real: Sequence[int], after: Sequence[int], p: Provenance) -> str:
    """The dataset card: where the images came from, the real and filled counts per class, and
    how to train on them (models/datasets/recipe.py)."""
    metrics = ", ".join(
        f"{markdown(key)} {value:.4g}"
        for key, value in p.metrics.items()
        if isinstance(value, float)
    )
    rows = "\n".join(
        f"| {k} | {r} | {a - r} | {a} |" for k, (r, a) in enumerate(zip(real, after, strict=True))
    )
    name = markdown(source.path.name)
    return (
        "---\ntags:\n- synthetic\n- machine-generated\n---\n\n"
        f"# {name}, balanced\n\n"
        f"Machine-generated images were added to {name} ({source.format}) by "
        "`dcgan balance`, so that every class has "
        f"{max(after)} images. The added images are "
        "synthetic (IPTC digital source type: trainedAlgorithmicMedia); each is listed in "
        f"`{METADATA_NAME}`.\n\n"
        f"- Model: {markdown(p.model)} version {markdown(p.version)}, from "
        f"{markdown(public_source(p.source))}\n"
        f"- Seed: {p.seed}; classifier filter: "
        f"{'none' if p.min_confidence is None else f'min confidence {p.min_confidence}'}\n"
        f"- Model metrics: {metrics or 'not published'}\n\n"
        "Images per class: real (before filling), generated, and after filling.\n\n"
        "| class | real | generated | after |\n|---|---|---|---|\n"
        f"{rows}\n\n" + "\n".join(how_to_train(real, after)) + "\n"
    )


def _has_our_card(directory: Path) -> bool:
    """Whether ``directory``'s README.md is a card this command wrote (a link is not read)."""
    st = lstat(directory / CARD_NAME)
    if st is None or not stat.S_ISREG(st.st_mode):
        return False
    with open_regular(directory / CARD_NAME, 1 << 30) as (stream, _):
        return "`dcgan balance`" in stream.read(2000).decode("utf-8", errors="replace")


def _card_name(root: Path) -> str:
    """README.md, unless the dataset has a README of its own: that is kept, the card beside it."""
    if lstat(root / CARD_NAME) is None or _has_our_card(root):
        return CARD_NAME
    return OWN_README_CARD_NAME


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
    if source.format is not Format.IMAGEFOLDER and not _has_our_card(directory):
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
    card = _card(source, real, after, provenance)
    name = _card_name(source.path) if source.format is Format.IMAGEFOLDER else CARD_NAME
    (stage / name).write_text(card)


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
