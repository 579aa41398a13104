"""A user's own labelled dataset for training (`dcgan train --data PATH --dataset NAME`).

It is read by the same code as `dcgan balance` reads it (``models.datasets``: ImageFolder, ``.npz``,
IDX, Hugging Face Parquet and ``save_to_disk``), as untrusted input, checked against the model's
28x28 images and 10 classes. It is identified by a sha256 of its content (shape, pixels and
labels), which the checkpoint and the published manifest carry, so a resumed run or a cached
evaluation classifier can never mix two versions of it.

A user's dataset has no test split, so a held-out part is kept for evaluation and the quality
gate: ``HOLDOUT_SHARE`` of each class (rounded, at least one image of every class that has two or
more), drawn with ``HOLDOUT_SEED``. The split depends only on the labels, so the same data always
gives the same split; a class with a single image is trained on and absent from the held-out part.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from models.contract import NUM_CLASSES
from models.datasets.readers import Dataset, Format, read_dataset
from models.netconfig import GANConfig
from pipeline.data.loading import ImageDataset
from pipeline.errors import DataError

HOLDOUT_SHARE = 0.1
HOLDOUT_SEED = 0
CONTENT_KEY = "content-sha256"  # the key of the content hash in ``ImageDataset.md5``


def content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """A hash of what training sees: the images' shape and pixels, then the labels (int64)."""
    digest = hashlib.sha256(repr(images.shape).encode())
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def holdout_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), stratified by class, sorted."""
    rng = np.random.default_rng(HOLDOUT_SEED)
    train, held = [], []
    for digit in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        count = 0 if len(idx) < 2 else max(1, round(HOLDOUT_SHARE * len(idx)))
        held.append(idx[:count])
        train.append(idx[count:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def class_names(dataset: Dataset) -> tuple[str, ...]:
    """Each class index's name: a Hugging Face ``ClassLabel``'s names where the data has them,
    else the index itself (ImageFolder folders, IDX and .npz labels are indices)."""
    names = [str(index) for index in range(NUM_CLASSES)]
    if dataset.format in (Format.PARQUET, Format.HF_DISK) and dataset.native is not None:
        from models.datasets.hf import columns

        _, label_column = columns(dataset.native, dataset.path)
        feature: Any = dataset.native.features[label_column]
        given = getattr(feature, "names", None) or []
        for index, name in enumerate(given[:NUM_CLASSES]):
            names[index] = str(name)
    return tuple(names)


def read_own_dataset(name: str, path: Path) -> ImageDataset:
    """``path`` read as the user's dataset ``name``, a held-out part kept as its test split."""
    source = read_dataset(path, NUM_CLASSES, GANConfig().image_size)
    images, labels = source.images, source.labels.astype(np.int64)
    train, held = holdout_split(labels)
    if len(train) == 0 or len(held) == 0:
        raise DataError(
            f"{path}: {len(labels)} images: too few to train on and hold some out for "
            "evaluation (a class needs two or more images to be held out)"
        )
    return ImageDataset(
        name=name,
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[held],
        test_labels=labels[held],
        md5={CONTENT_KEY: content_sha256(images, labels)},
        class_names=class_names(source),
        holdout={
            "share": HOLDOUT_SHARE,
            "seed": HOLDOUT_SEED,
            "train_images": len(train),
            "held_out_images": len(held),
            "format": source.format.value,
        },
    )
