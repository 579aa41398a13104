"""The training sets a method learns from, built from one seed's skewed set: the skewed set
itself, oversampled (plain or shifted and rotated), filled with generated digits, or the full
set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from models.contract import NUM_CLASSES
from pipeline.experiments.augment import shift_rotate
from pipeline.experiments.methods import BalanceSetup, TrainingSet

# Generated digits for a method: (counts, targets, seed, min_confidence) -> (images, labels, rate).
Generate = Callable[
    [list[int], list[int], int, float | None], tuple[np.ndarray, np.ndarray, float | None]
]


def skewed_indices(labels: np.ndarray, setup: BalanceSetup, seed: int) -> np.ndarray:
    """Indices of the skewed set: ``keep`` of each rare class (at least one), all of the rest."""
    rng = np.random.default_rng(seed)
    keep = []
    for digit in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == digit)
        if digit in setup.rare:
            count = max(1, round(setup.keep * len(idx)))
            idx = rng.choice(idx, size=count, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep))


def oversample(
    images: np.ndarray, labels: np.ndarray, targets: np.ndarray, seed: int, augment: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of each class's own images, enough to reach ``targets``: shifted and rotated with
    ``augment``, else repeated as they are."""
    rng = np.random.default_rng(seed)
    extra_images, extra_labels = [], []
    for digit in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == digit)
        missing = int(targets[digit]) - len(idx)
        if missing <= 0 or len(idx) == 0:
            continue
        picks = rng.choice(idx, size=missing, replace=True)
        copies = shift_rotate(images[picks], seed=seed * 100 + digit) if augment else images[picks]
        extra_images.append(copies)
        extra_labels.append(np.full(missing, digit, dtype=np.int64))
    if not extra_images:
        return images[:0], labels[:0]
    return np.concatenate(extra_images), np.concatenate(extra_labels)


def training_set(
    data: TrainingSet,
    images: np.ndarray,
    labels: np.ndarray,
    full: tuple[np.ndarray, np.ndarray],
    full_counts: np.ndarray,
    seed: int,
    setup: BalanceSetup,
    generate: Generate | None,
    generated: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels one kind of training set holds, for this seed's skewed set."""
    if data == "skewed":
        return images, labels
    if data == "full":
        return full
    if data in ("oversampled", "augmented"):
        ex, ey = oversample(images, labels, full_counts, seed, augment=data == "augmented")
    else:
        assert generate is not None
        counts = np.bincount(labels, minlength=NUM_CLASSES).tolist()
        floor = setup.min_confidence if data == "filtered" else None
        ex, ey, rate = generate(counts, full_counts.tolist(), seed, floor)
        generated["images"] += len(ey)
        if rate is not None:
            generated["acceptance_rate"].append(rate)
    return np.concatenate([images, ex]), np.concatenate([labels, ey])
