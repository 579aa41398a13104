"""What a generated image says about itself: the provenance stamped into every PNG (XMP with the
IPTC digital source type, text chunks), its metadata.jsonl row, and the dataset card (README.md)
that `dcgan balance` writes beside a filled dataset, with the real and filled counts and how to
train on them (models/datasets/recipe.py). The card names the dataset by its escaped name only."""

from __future__ import annotations

import html
import io
import json
import re
import stat
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from models.datasets.files import lstat, open_regular, shown
from models.datasets.readers import Dataset
from models.datasets.recipe import GENERATED_FIELDS, how_to_train
from serving.tools.dataset_journal import CARD_NAME, METADATA_NAME, OWN_README_CARD_NAME

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


def card(source: Dataset, real: Sequence[int], after: Sequence[int], p: Provenance) -> str:
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


def has_our_card(directory: Path) -> bool:
    """Whether ``directory``'s README.md is a card this command wrote (a link is not read)."""
    st = lstat(directory / CARD_NAME)
    if st is None or not stat.S_ISREG(st.st_mode):
        return False
    with open_regular(directory / CARD_NAME, 1 << 30) as (stream, _):
        return "`dcgan balance`" in stream.read(2000).decode("utf-8", errors="replace")


def card_name(root: Path) -> str:
    """README.md, unless the dataset has a README of its own: that is kept, the card beside it."""
    if lstat(root / CARD_NAME) is None or has_our_card(root):
        return CARD_NAME
    return OWN_README_CARD_NAME
