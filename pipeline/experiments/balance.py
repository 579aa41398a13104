"""Balancing a skewed MNIST with generated digits, against oversampling and the full set.

A skewed training set keeps ``keep`` of the rare classes' images (default 1% of digits 0-4) and
all of the others. The project's standard classifier (``ClassifierRecipe``) is trained on:

- ``skewed``: the skewed set as it is (the floor);
- ``generated``: the skewed set plus digits from the running service's ``/balance``, filling each
  class back up to its count in the full set;
- ``oversampled``: the skewed set plus its own rare images repeated with shifts (<= 2 px) and
  rotations (<= 10 deg) up to the same counts;
- ``full``: the whole real training set (the ceiling);

and measured on the real test set (accuracy, per-class recall), for several seeds. The headline is
the share of the skewed-to-full accuracy gap that each method closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.contract import NUM_CLASSES
from pipeline.data.loading import ImageDataset
from pipeline.evaluation.classifier import ClassifierRecipe, predict, train_classifier
from pipeline.experiments.augment import shift_rotate

log = logging.getLogger("dcgan.experiments.balance")

METHODS = ("skewed", "generated", "oversampled", "full")
Generate = Callable[[list[int], list[int], int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class BalanceSetup:
    keep: float = 0.01
    rare: tuple[int, ...] = (0, 1, 2, 3, 4)
    seeds: tuple[int, ...] = (0, 1, 2)
    classifier_epochs: int = 5  # as `dcgan experiment balance` and its recorded results
    methods: tuple[str, ...] = METHODS

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        if not self.rare or any(not 0 <= d < NUM_CLASSES for d in self.rare):
            raise ValueError(f"rare must list digits 0..9, got {self.rare}")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")


@dataclass
class MethodResult:
    accuracy: list[float] = field(default_factory=list)
    recall: list[list[float]] = field(default_factory=list)  # per seed, per class
    train_size: list[int] = field(default_factory=list)


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
    images: np.ndarray, labels: np.ndarray, targets: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented copies of each class's own images, enough to reach ``targets``."""
    rng = np.random.default_rng(seed)
    extra_images, extra_labels = [], []
    for digit in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == digit)
        missing = int(targets[digit]) - len(idx)
        if missing <= 0 or len(idx) == 0:
            continue
        picks = rng.choice(idx, size=missing, replace=True)
        extra_images.append(shift_rotate(images[picks], seed=seed * 100 + digit))
        extra_labels.append(np.full(missing, digit, dtype=np.int64))
    if not extra_images:
        return images[:0], labels[:0]
    return np.concatenate(extra_images), np.concatenate(extra_labels)


def score(
    images: np.ndarray, labels: np.ndarray, dataset: ImageDataset, recipe: ClassifierRecipe
) -> tuple[float, list[float]]:
    """Train the standard classifier on (images, labels); accuracy and recall on real test."""
    model = train_classifier(images, labels, recipe)
    logits, _ = predict(model, dataset.test_images)
    predicted = logits.argmax(1)
    truth = dataset.test_labels
    recall = [float((predicted[truth == d] == d).mean()) for d in range(NUM_CLASSES)]
    return float((predicted == truth).mean()), recall


def run_balance_experiment(
    dataset: ImageDataset, generate: Generate | None, setup: BalanceSetup
) -> dict[str, Any]:
    """Every method for every seed. ``generate(counts, targets, seed)`` -> (images, labels)."""
    if "generated" in setup.methods and generate is None:
        raise ValueError("the generated method needs a service to generate from")
    full_counts = np.bincount(dataset.train_labels, minlength=NUM_CLASSES)
    results = {name: MethodResult() for name in setup.methods}
    generated_from: dict[str, Any] = {}
    for seed in setup.seeds:
        recipe = ClassifierRecipe(epochs=setup.classifier_epochs, seed=seed)
        idx = skewed_indices(dataset.train_labels, setup, seed)
        images, labels = dataset.train_images[idx], dataset.train_labels[idx]
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        for name in setup.methods:
            if name == "skewed":
                x, y = images, labels
            elif name == "full":
                x, y = dataset.train_images, dataset.train_labels
            elif name == "oversampled":
                ex, ey = oversample(images, labels, full_counts, seed)
                x, y = np.concatenate([images, ex]), np.concatenate([labels, ey])
            else:
                assert generate is not None
                gx, gy = generate(counts.tolist(), full_counts.tolist(), seed)
                generated_from.setdefault("images", 0)
                generated_from["images"] += len(gy)
                x, y = np.concatenate([images, gx]), np.concatenate([labels, gy])
            acc, recall = score(x, y, dataset, recipe)
            results[name].accuracy.append(acc)
            results[name].recall.append(recall)
            results[name].train_size.append(len(y))
            log.info("seed %d %s: %d images, accuracy %.4f", seed, name, len(y), acc)
            print(f"seed {seed} {name:<11} {len(y):>6} images  accuracy {acc:.4f}", flush=True)
    return summarize(results, setup, full_counts, generated_from)


def summarize(
    results: dict[str, MethodResult],
    setup: BalanceSetup,
    full_counts: np.ndarray,
    extra: dict[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {"setup": asdict(setup), "full_counts": full_counts.tolist(), **extra}
    methods: dict[str, Any] = {}
    for name, r in results.items():
        acc = np.asarray(r.accuracy)
        recall = np.asarray(r.recall)
        rare = recall[:, list(setup.rare)]
        methods[name] = {
            **asdict(r),
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "recall_mean": recall.mean(0).tolist(),
            "rare_recall_mean": float(rare.mean()),
            "worst_recall_mean": float(recall.min(1).mean()),
        }
    if "skewed" in methods and "full" in methods:
        floor, ceiling = methods["skewed"]["accuracy_mean"], methods["full"]["accuracy_mean"]
        for m in methods.values():
            gap = ceiling - floor
            m["gap_closed"] = (m["accuracy_mean"] - floor) / gap if gap > 0 else None
    out["methods"] = methods
    out["table"] = markdown(methods)
    return out


def markdown(methods: dict[str, Any]) -> str:
    lines = [
        "| method | train images | accuracy (mean ± std) | rare-class recall | worst class "
        "| gap closed |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, m in methods.items():
        gap = m.get("gap_closed")
        lines.append(
            f"| {name} | {int(np.mean(m['train_size']))} | "
            f"{100 * m['accuracy_mean']:.2f}% ± {100 * m['accuracy_std']:.2f} | "
            f"{100 * m['rare_recall_mean']:.2f}% | {100 * m['worst_recall_mean']:.2f}% | "
            f"{'' if gap is None else f'{100 * gap:.0f}%'} |"
        )
    return "\n".join(lines)


def plot_recall(results: dict[str, Any], path: str, title: str) -> None:
    """Grouped bars: mean per-class recall of each method, with the min..max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = results["methods"]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=120)
    width = 0.8 / len(methods)
    digits = np.arange(NUM_CLASSES)
    for i, (name, m) in enumerate(methods.items()):
        recall = np.asarray(m["recall"])
        mean = recall.mean(0)
        err = np.vstack([mean - recall.min(0), recall.max(0) - mean])
        ax.bar(
            digits + (i - (len(methods) - 1) / 2) * width,
            100 * mean,
            width,
            yerr=100 * err,
            label=f"{name} ({100 * m['accuracy_mean']:.2f}%)",
            capsize=2,
        )
    ax.set_xticks(digits)
    ax.set_xlabel("digit (real test set)")
    ax.set_ylabel("recall (%)")
    ax.set_ylim(
        max(0.0, 100 * min(np.asarray(m["recall"]).min() for m in methods.values()) - 5), 100.5
    )
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def service_generator(url: str) -> Generate:
    """``/balance`` of a running service, through the project's client."""
    from serving.client import DigitsClient

    def generate(
        counts: Sequence[int], targets: Sequence[int], seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        with DigitsClient(url, timeout=600) as client:
            got = client.balance(list(counts), target=list(targets), seed=seed)
        return got.images, got.labels

    return generate
