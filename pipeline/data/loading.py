"""Load a verified dataset into memory from whichever source the user named."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.catalog import DATASETS, SPLIT_FILES, DatasetSpec, get_spec
from pipeline.data.idx import find_file, read_verified
from pipeline.data.sources import download
from pipeline.errors import DataError, DataSourceError
from pipeline.settings import get_settings

# An own dataset's name: it names a registry model (cdcgan-<name>) and appears in manifests.
OWN_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class ImageDataset:
    """A whole dataset in memory: uint8 images (N, 28, 28) and int64 labels (N,).

    ``md5``: the published files' md5s, or for a user's own data its content hash
    (pipeline/data/own.py); ``holdout``: how a user's data was split for evaluation (None for a
    dataset with a test split of its own)."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    md5: dict[str, str]
    class_names: tuple[str, ...]
    holdout: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        """What a checkpoint and a manifest record of the data (besides its hash)."""
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "train_images": len(self.train_labels),
            "test_images": len(self.test_labels),
            **({"holdout": self.holdout} if self.holdout is not None else {}),
        }

    @property
    def fingerprint(self) -> str:
        """A short key for caches that depend on the exact data (the md5s, in file order)."""
        import hashlib

        joined = ",".join(f"{k}={v}" for k, v in sorted(self.md5.items()))
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def train_subset(self, limit: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A random, class-mixed subset of the training split (all of it when limit is None)."""
        if limit is None or limit >= len(self.train_labels):
            return self.train_images, self.train_labels
        idx = np.random.default_rng(seed).permutation(len(self.train_labels))[:limit]
        idx.sort()
        return self.train_images[idx], self.train_labels[idx]


def read_directory(spec: DatasetSpec, directory: Path) -> ImageDataset:
    """Read and verify all four files from a directory (raw or .gz)."""
    arrays: dict[str, np.ndarray] = {}
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        for name in (images_name, labels_name):
            path = find_file(directory, name)
            if path is None:
                raise DataError(
                    f"{directory}: missing {name} (or {name}.gz), expected md5 {spec.md5[name]}"
                )
            arrays[name] = read_verified(path, spec.md5[name])
        images, labels = arrays[images_name], arrays[labels_name]
        count = images.shape[0]
        if images.ndim != 3 or labels.shape != (count,) or count != spec.counts[split]:
            raise DataError(f"{directory}: {split} split has inconsistent shapes")
    return ImageDataset(
        name=spec.name,
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"].astype(np.int64),
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"].astype(np.int64),
        md5=dict(spec.md5),
        class_names=spec.class_names,
    )


def load_dataset(name: str = "mnist", source: str | None = None) -> ImageDataset:
    """Load ``name`` from ``source``.

    A published dataset (``mnist``, ``fashion-mnist``), md5-verified:

    - ``None``/``"auto"``: ``$DCGAN_DATA_DIR/<name>``, downloading from the mirrors what is missing;
    - ``"download"``: the same, but always check the mirrors for missing files;
    - ``"s3://bucket/prefix"``: copy from S3/MinIO into the cache, then read;
    - a directory holding the four IDX files under their published names, read in place.

    Any other ``name`` is the user's own dataset, read from the path ``source`` in any format
    `dcgan balance` reads (pipeline/data/own.py).
    """
    if name not in DATASETS:
        return _own_dataset(name, source)
    spec = get_spec(name)
    settings = get_settings()
    if source in (None, "auto", "download"):
        directory = settings.data_dir / spec.name
        return _read_or_fetch(
            spec, directory, lambda: download(spec, directory, timeout=settings.download_timeout_s)
        )
    if source.startswith("s3://"):
        from pipeline.data.s3_source import fetch_from_s3  # the S3 client only when asked for

        directory = settings.cache_dir / "datasets" / spec.name
        return _read_or_fetch(spec, directory, lambda: fetch_from_s3(spec, source, directory))
    directory = Path(source)
    if not directory.is_dir() or not any(find_file(directory, f) for f in spec.files):
        if directory.exists() or directory.is_symlink():
            raise DataSourceError(
                f"{directory} does not hold the published {spec.name} files: to train on your "
                f"own data, name it: --dataset NAME (not {', '.join(DATASETS)})"
            )
        raise DataSourceError(f"data directory {directory} does not exist")
    return read_directory(spec, directory)


def _own_dataset(name: str, source: str | None) -> ImageDataset:
    """The user's dataset ``name`` at the path ``source``."""
    if not OWN_NAME.fullmatch(name):
        raise DataSourceError(
            f"dataset {name!r}: a published one ({', '.join(DATASETS)}) or a name of your own "
            "data (lowercase letters, digits and '-', at most 63) with --data PATH"
        )
    if source is None or source in ("auto", "download") or source.startswith("s3://"):
        raise DataSourceError(
            f"unknown dataset {name!r}: the published ones are {', '.join(DATASETS)}; for your "
            "own data give its files with --data PATH (an ImageFolder or save_to_disk "
            "directory, .npz, .parquet or IDX)"
        )
    from pipeline.data.own import read_own_dataset

    return read_own_dataset(name, Path(source))


def _read_or_fetch(spec: DatasetSpec, directory: Path, fetch: Callable[[], None]) -> ImageDataset:
    """Read the local copy (each file verified once); only if a file is missing or fails its md5,
    fetch what is missing or invalid and read again."""
    try:
        return read_directory(spec, directory)
    except DataError:
        fetch()
        return read_directory(spec, directory)
