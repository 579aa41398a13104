"""Hugging Face datasets, read as untrusted input (for `dcgan train --data` and `dcgan balance`):
a Parquet file (as the Hub serves them) or a ``save_to_disk`` directory, through the ``datasets``
library (the ``hf`` extra); serving/tools/hf_datasets.py writes them back.

The dataset needs one image column (the ``Image`` feature, or PNG/JPEG bytes as Parquet holds
them) and one integer label column (``ClassLabel`` or an integer named ``label``/``labels``).
Generated rows are appended with the same features: the image as a provenance-stamped PNG under
``path`` ``dcgan-<version>-<seed>-<n>.png``, the label as the class index.

A ``save_to_disk`` directory is read here, not by ``load_from_disk``: its ``state.json`` may name
only plain file names, regular files directly in that directory (never a link, never a path out
of it), and every file is read within the limits (models/datasets/files.py). A Parquet file's
footer is checked (rows, uncompressed size) before its data is read. Whatever the libraries raise
on malformed bytes becomes one DatasetError line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from models.datasets.arrow import read_stream
from models.datasets.files import (
    DatasetLimits,
    json_object,
    lstat,
    open_regular,
    read_file,
    refused,
)
from models.datasets.readers import Expect, decode_gray, stack_same_shape
from models.errors import DatasetError

LABEL_NAMES = ("label", "labels")
STATE, INFO = "state.json", "dataset_info.json"
SAVED_MARKERS = (INFO, STATE)
T = TypeVar("T")


def library() -> Any:
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            "Hugging Face datasets need the `datasets` package: pip install "
            "'dcgan-mnist-service[hf]'"
        ) from None
    datasets.disable_progress_bars()
    return datasets


def guarded(origin: Path, call: Callable[[], T], what: str = "not a readable") -> T:
    """``call()``, a library's work on untrusted data: whatever it raises is one line."""
    try:
        return call()
    except DatasetError:
        raise
    except Exception as exc:
        raise refused(
            f"{origin}: {what} Hugging Face dataset ({type(exc).__name__}: {exc})"
        ) from None


def is_saved_dataset(path: Path) -> bool:
    """A ``Dataset.save_to_disk`` directory: its two JSON files are there (checked when read)."""
    return all(lstat(path / name) is not None for name in SAVED_MARKERS)


def _json_object(path: Path, limits: DatasetLimits) -> dict[str, Any]:
    return json_object(read_file(path, limits.max_json_bytes), str(path))


def _data_files(path: Path, state: dict[str, Any]) -> list[Path]:
    """The data files ``state.json`` names, each a plain name directly in ``path``."""
    entries = state.get("_data_files")
    if not isinstance(entries, list) or not entries:
        raise refused(f"{path / STATE}: '_data_files' must list the dataset's data files")
    files = []
    for entry in entries:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if (
            not isinstance(name, str)
            or name in ("", ".", "..")
            or any(c in name for c in "/\\\0")
            or (path / name).parent != path
        ):
            raise refused(
                f"{path / STATE}: data file {name!r} is not a file name inside the dataset "
                "(only files directly in its directory are read)"
            )
        files.append(path / name)
    return files


def _saved_table(path: Path, limits: DatasetLimits) -> tuple[Any, dict[str, Any]]:
    """The rows of a save_to_disk directory and its dataset_info.json."""
    import pyarrow as pa

    state, info = _json_object(path / STATE, limits), _json_object(path / INFO, limits)
    tables, left = [], limits.max_file_bytes
    for file in _data_files(path, state):
        data = read_file(file, left)
        left -= len(data)
        tables.append(guarded(file, lambda data=data: read_stream(data)))  # type: ignore[misc]
    return guarded(path, lambda: pa.concat_tables(tables)), info


def _parquet_table(path: Path, limits: DatasetLimits) -> Any:
    """A Parquet file's rows, its footer checked before the data is read."""
    import pyarrow.parquet as pq

    with open_regular(path, limits.max_file_bytes) as (stream, _):
        parquet = guarded(path, lambda: pq.ParquetFile(stream))
        meta = parquet.metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if meta.num_rows > limits.max_images:
            raise refused(
                f"{path}: {meta.num_rows} rows, more than the limit of {limits.max_images}"
            )
        if size > limits.max_file_bytes:
            raise refused(
                f"{path}: {size} bytes uncompressed, more than the limit of {limits.max_file_bytes}"
            )
        return guarded(path, parquet.read)


def load(path: Path, limits: DatasetLimits) -> Any:
    """The ``datasets.Dataset`` at ``path``, in memory (no cache files written anywhere)."""
    hf = library()
    from datasets.table import InMemoryTable

    if path.is_dir():
        table, info = _saved_table(path, limits)
        dataset_info = guarded(path / INFO, lambda: hf.DatasetInfo.from_dict(info))
        return guarded(path, lambda: hf.Dataset(InMemoryTable(table), info=dataset_info))
    table = _parquet_table(path, limits)
    return guarded(path, lambda: hf.Dataset(InMemoryTable(table)))


def columns(dataset: Any, path: Path) -> tuple[str, str]:
    """The image and label columns' names."""
    hf = library()
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
        raise refused(
            f"{path}: needs one image column and one label column (has {', '.join(features)})"
        )
    extra = set(features) - {images[0], labels[0]}
    if extra:  # found when reading, before any image is generated
        raise refused(
            f"{path}: columns {', '.join(sorted(extra))} besides the image and label: "
            "generated rows would have no value for them"
        )
    return images[0], labels[0]


def read(path: Path, expect: Expect) -> tuple[np.ndarray, np.ndarray, Any]:
    """uint8 images (N, H, W), the labels, and the library's dataset (kept for writing)."""
    limits = expect.limits
    dataset = load(path, limits)
    image_column, label_column = columns(dataset, path)
    if expect.image_size is not None:
        expect.images(len(dataset), expect.image_size, expect.image_size, path)
    elif len(dataset) > limits.max_images:
        raise refused(f"{path}: {len(dataset)} rows, more than the limit of {limits.max_images}")
    image_feature = library().Image(decode=False)
    raw = guarded(path, lambda: dataset.cast_column(image_column, image_feature)[image_column])
    pixels, origins, pixels_read = [], [], 0
    for row, value in enumerate(raw):
        origin = f"{path} row {row}"
        data = value.get("bytes") if isinstance(value, dict) else None
        if not isinstance(data, bytes) or not data:
            raise refused(f"{origin}: no image bytes (images by path are not read)")
        image = decode_gray(data, origin, expect)
        pixels_read += image.size
        if pixels_read > limits.max_pixel_bytes:
            raise refused(f"{path}: more than {limits.max_pixel_bytes} bytes of pixels")
        pixels.append(image)
        origins.append(origin)
    labels = np.asarray(guarded(path, lambda: dataset[label_column]))
    return stack_same_shape(pixels, origins, path), labels, dataset
