"""Hugging Face datasets for `dcgan balance`: a Parquet file (as the Hub serves them) or a
``save_to_disk`` directory, read and written through the ``datasets`` library (the ``hf`` extra).

The dataset needs one image column (the ``Image`` feature, or PNG/JPEG bytes as Parquet holds
them) and one integer label column (``ClassLabel`` or an integer named ``label``/``labels``).
Generated rows are appended with the same features: the image as a provenance-stamped PNG under
``path`` ``dcgan-<version>-<seed>-<n>.png``, the label as the class index.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from serving.datasets import Provenance, decode_gray, png_bytes, stack_same_shape
from serving.errors import DatasetError

LABEL_NAMES = ("label", "labels")
SAVED_MARKERS = ("dataset_info.json", "state.json")


def _library() -> Any:
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            "Hugging Face datasets need the `datasets` package: pip install "
            "'dcgan-mnist-service[hf]'"
        ) from None
    datasets.disable_progress_bars()
    return datasets


def is_saved_dataset(path: Path) -> bool:
    """A ``Dataset.save_to_disk`` directory (its two JSON files are there)."""
    return path.is_dir() and all((path / name).is_file() for name in SAVED_MARKERS)


def load(path: Path) -> Any:
    """The ``datasets.Dataset`` at ``path``, in memory (no cache files written anywhere)."""
    hf = _library()
    try:
        if path.is_dir():
            dataset = hf.load_from_disk(str(path), keep_in_memory=True)
        else:
            import pyarrow.parquet as pq

            dataset = hf.Dataset(pq.read_table(path))
    except (OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: not a readable Hugging Face dataset ({exc})") from None
    if not isinstance(dataset, hf.Dataset):
        raise DatasetError(f"{path}: a DatasetDict; point at one split's directory")
    return dataset


def columns(dataset: Any, path: Path) -> tuple[str, str]:
    """The image and label columns' names."""
    hf = _library()
    features = dataset.features
    images = [name for name, f in features.items() if isinstance(f, hf.Image)]
    if not images:  # Parquet written without the features' metadata: a {bytes, path} struct
        images = [
            name
            for name, f in features.items()
            if isinstance(f, dict) and set(f) >= {"bytes", "path"}
        ]
    labels = [name for name, f in features.items() if isinstance(f, hf.ClassLabel)]
    labels = labels or [name for name in LABEL_NAMES if name in features]
    if len(images) != 1 or len(labels) != 1:
        raise DatasetError(
            f"{path}: needs one image column and one label column (has {', '.join(features)})"
        )
    extra = set(features) - {images[0], labels[0]}
    if extra:  # found when reading, before any image is generated
        raise DatasetError(
            f"{path}: columns {', '.join(sorted(extra))} besides the image and label: "
            "generated rows would have no value for them"
        )
    return images[0], labels[0]


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W) and the labels of the dataset at ``path``."""
    dataset = load(path)
    image_column, label_column = columns(dataset, path)
    raw = dataset.cast_column(image_column, _library().Image(decode=False))
    pixels, origins = [], []
    for row, value in enumerate(raw[image_column]):
        origin = f"{path} row {row}"
        data = value.get("bytes") if isinstance(value, dict) else None
        if not data:
            raise DatasetError(f"{origin}: no image bytes (images by path are not read)")
        pixels.append(decode_gray(io.BytesIO(data), origin))
        origins.append(origin)
    labels = np.asarray(dataset[label_column])
    return stack_same_shape(pixels, origins, path), labels


def write(
    source: Path,
    stage: Path,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: Provenance,
) -> list[str]:
    """The source dataset plus the generated rows, in the source's form, under ``stage``; the
    generated rows' names (for metadata.jsonl)."""
    hf = _library()
    dataset = load(source)
    image_column, label_column = columns(dataset, source)
    names = [
        f"dcgan-{provenance.version}-{provenance.seed}-{index:06d}.png"
        for index in range(len(images))
    ]
    added = hf.Dataset.from_dict(
        {
            image_column: [
                {"bytes": png_bytes(pixels, provenance, index), "path": name}
                for index, (pixels, name) in enumerate(zip(images, names, strict=True))
            ],
            label_column: [int(label) for label in labels],
        }
    )
    combined = hf.concatenate_datasets([dataset, added.cast(dataset.features)])
    if source.is_dir():
        combined.save_to_disk(str(stage / "dataset"))
        for file in (stage / "dataset").iterdir():
            file.rename(stage / file.name)
        (stage / "dataset").rmdir()
    else:
        combined.to_parquet(str(stage / source.name))
    return names
