"""Hugging Face datasets written back by `dcgan balance`: the source's rows plus the generated
ones, with the same features, through the ``datasets`` library (the ``hf`` extra). Reading them,
as untrusted input, is models/datasets/hf.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.datasets.hf import columns, guarded, library
from models.datasets.readers import Dataset, Format
from serving.tools.provenance import Provenance, png_bytes


def write(
    source: Dataset,
    stage: Path,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
) -> list[str]:
    """The source dataset plus the generated rows, in the source's form, under ``stage``; the
    generated rows' names (for metadata.jsonl)."""
    hf = library()
    image_column, label_column = columns(source.native, source.path)
    names = [
        f"dcgan-{provenance.version}-{provenance.seed}-{index:06d}.png"
        for index in range(len(images))
    ]
    rows = {
        image_column: [
            {"bytes": png_bytes(pixels, provenance, index), "path": name}
            for index, (pixels, name) in enumerate(zip(images, names, strict=True))
        ],
        label_column: [int(label) for label in labels],
    }

    def combine() -> Any:
        # A Parquet file without the features' metadata holds a plain {bytes, path} struct (its
        # path column all null, typed null): as the Image feature, generated rows fit it.
        dataset = source.native.cast_column(image_column, hf.Image())
        added = hf.Dataset.from_dict(rows).cast(dataset.features)
        return hf.concatenate_datasets([dataset, added])

    combined = guarded(source.path, combine, "cannot extend the")
    if source.format is Format.HF_DISK:
        guarded(stage, lambda: combined.save_to_disk(str(stage / "dataset")), "cannot write the")
        for file in (stage / "dataset").iterdir():
            file.rename(stage / file.name)
        (stage / "dataset").rmdir()
    else:
        guarded(
            stage, lambda: combined.to_parquet(str(stage / source.path.name)), "cannot write the"
        )
    return names
