"""Balancing a skewed dataset with generated digits, against the long-tail literature's cheap
baselines, the skewed set itself and the full set.

A skewed training set keeps ``keep`` of the rare classes' images (default 1% of classes 0-4) and
all of the others. The project's standard classifier (``ClassifierRecipe``) is trained on one of
a few training sets, with plain or prior-adjusted cross-entropy, and its test-time logits are
optionally corrected for the training prior. Each method (``METHODS``) is such a combination:

- ``skewed``: the skewed set as it is (the floor); ``skewed+prior``: its logits corrected for the
  training prior at test time (thresholding, Buda et al. 2018; post-hoc logit adjustment);
- ``oversampled``: the skewed set with its rare images repeated up to each class's count in the
  full set; ``oversampled+prior``: the same with the prior correction (the target and training
  priors agree once every class is filled, so it matches ``oversampled`` up to rounding);
- ``augmented``: oversampling with shifts (<= 2 px) and rotations (<= 10 deg);
- ``class-weighted``: the skewed set, each class's loss weighted by 1 / its count (normalised);
- ``logit-adjusted``: the skewed set with the logit-adjusted loss (Menon et al. 2021, tau = 1);
- ``generated``: the skewed set plus digits from the running service's ``/balance``, up to each
  class's full count; ``generated-filtered``: the same with ``min_confidence`` (each digit read
  as its class by the version's classifier); ``generated+logit-adjusted``: filtered digits and
  the logit-adjusted loss (with the training set's own prior, which filling leaves almost flat);
  ``generated+la-real-prior``: filtered digits with the logit-adjusted loss against the *real*
  skewed set's prior (the combination the long-tail literature uses: the offsets say how rare
  each class truly is, not how many copies the filling added);
- ``generated-downweighted``: filtered digits, each generated row weighing
  ``GENERATED_LOSS_WEIGHT`` (0.5, fixed beforehand, never tuned on the test set) in the loss
  against 1 for a real one;
- ``generated+recipe``: what a filled dataset's card tells its user to do
  (models/datasets/recipe.py): the logit-adjusted loss against the real prior *and* generated
  rows down-weighted;
- ``generated+retrain-head``: the classifier of ``generated-filtered`` with its last layer
  trained anew on the real skewed set alone with the logit-adjusted loss (classifier re-training,
  Kang et al. 2020): the body learns shapes from the filled set, the decision from real data;
- ``full``: the whole real training set (the ceiling).

Each trained classifier is measured on the real test set (accuracy, per-class recall), for several
seeds; methods that differ only in the test-time correction share one trained classifier. The
headline is the share of the skewed-to-full accuracy gap that each method closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from models.classifier import DigitClassifier
from models.contract import NUM_CLASSES
from models.datasets.recipe import GENERATED_LOSS_WEIGHT, real_log_prior
from pipeline.data.loading import ImageDataset
from pipeline.evaluation.classifier import (
    ClassifierRecipe,
    PriorAdjustedLoss,
    predict,
    retrain_head,
    train_classifier,
)
from pipeline.experiments.augment import shift_rotate

log = logging.getLogger("dcgan.experiments.balance")

TrainingSet = Literal["skewed", "oversampled", "augmented", "generated", "filtered", "full"]
Loss = Literal["plain", "class-weighted", "logit-adjusted"]


@dataclass(frozen=True)
class Method:
    """What a method trains on, with which loss, and whether its logits are prior-corrected.
    ``loss_prior``: whose class frequencies a prior-adjusted loss uses, the training set's own
    or the real skewed set's (the same for methods without generated images).
    ``generated_weight``: a generated row's weight in the loss (a real row weighs 1).
    ``real_head``: the last layer retrained on the real skewed set (logit-adjusted loss)."""

    data: TrainingSet
    loss: Loss = "plain"
    prior_correction: bool = False
    loss_prior: Literal["train", "real"] = "train"
    generated_weight: float = 1.0
    real_head: bool = False


METHODS: dict[str, Method] = {
    "skewed": Method("skewed"),
    "skewed+prior": Method("skewed", prior_correction=True),
    "oversampled": Method("oversampled"),
    "oversampled+prior": Method("oversampled", prior_correction=True),
    "augmented": Method("augmented"),
    "class-weighted": Method("skewed", "class-weighted"),
    "logit-adjusted": Method("skewed", "logit-adjusted"),
    "generated": Method("generated"),
    "generated-filtered": Method("filtered"),
    "generated+logit-adjusted": Method("filtered", "logit-adjusted"),
    "generated+la-real-prior": Method("filtered", "logit-adjusted", loss_prior="real"),
    "generated-downweighted": Method("filtered", generated_weight=GENERATED_LOSS_WEIGHT),
    "generated+recipe": Method(
        "filtered", "logit-adjusted", loss_prior="real", generated_weight=GENERATED_LOSS_WEIGHT
    ),
    "generated+retrain-head": Method("filtered", real_head=True),
    "full": Method("full"),
}
GENERATED: frozenset[TrainingSet] = frozenset({"generated", "filtered"})
# Generated digits for a method: (counts, targets, seed, min_confidence) -> (images, labels, rate).
Generate = Callable[
    [list[int], list[int], int, float | None], tuple[np.ndarray, np.ndarray, float | None]
]


@dataclass(frozen=True)
class BalanceSetup:
    keep: float = 0.01
    rare: tuple[int, ...] = (0, 1, 2, 3, 4)
    seeds: tuple[int, ...] = (0, 1, 2)
    classifier_epochs: int = 3  # the evaluation classifier's recipe, as the recorded results
    methods: tuple[str, ...] = tuple(METHODS)
    min_confidence: float = 0.9  # the filter of the generated-filtered methods

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        if not self.rare or any(not 0 <= d < NUM_CLASSES for d in self.rare):
            raise ValueError(f"rare must list digits 0..9, got {self.rare}")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")

    @property
    def needs_service(self) -> bool:
        return any(METHODS[name].data in GENERATED for name in self.methods)


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


def log_prior(labels: np.ndarray) -> np.ndarray:
    """Log class frequencies of ``labels`` (a class that never occurs counts as half an image)."""
    return real_log_prior(np.bincount(labels, minlength=NUM_CLASSES).tolist())


def prior_adjusted_loss(loss: Loss, labels: np.ndarray) -> PriorAdjustedLoss | None:
    """The loss terms of ``loss`` for a training set with these labels."""
    if loss == "plain":
        return None
    if loss == "logit-adjusted":
        return PriorAdjustedLoss(logit_offsets=tuple(log_prior(labels).tolist()))
    counts = np.maximum(np.bincount(labels, minlength=NUM_CLASSES), 1).astype(np.float64)
    weights = (1.0 / counts) * len(labels) / NUM_CLASSES  # each class weighs the same in total
    return PriorAdjustedLoss(class_weights=tuple(weights.tolist()))


def trained_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    recipe: ClassifierRecipe,
    loss: Loss,
    prior_labels: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
) -> DigitClassifier:
    """The standard classifier trained on (images, labels). A prior-adjusted loss takes its class
    frequencies from ``prior_labels`` (default labels)."""
    adjusted = prior_adjusted_loss(loss, labels if prior_labels is None else prior_labels)
    return train_classifier(images, labels, recipe, loss=adjusted, sample_weights=sample_weights)


def test_logits(model: DigitClassifier, dataset: ImageDataset) -> np.ndarray:
    """``model``'s logits on the real test set."""
    logits, _ = predict(model, dataset.test_images)
    return logits


def score(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, list[float]]:
    """Accuracy and per-class recall."""
    recall = [float((predicted[truth == d] == d).mean()) for d in range(NUM_CLASSES)]
    return float((predicted == truth).mean()), recall


def run_balance_experiment(
    dataset: ImageDataset,
    generate: Generate | None,
    setup: BalanceSetup,
    user_data: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every method for every seed. ``generate(counts, targets, seed, min_confidence)`` ->
    (images, labels, acceptance rate or None). ``user_data`` (images, labels, skewed indices):
    the user's data, its "full" ceiling, and one skewed set for every seed (the scenarios of
    ``pipeline.experiments.scenarios``); default: the whole training split, skewed anew per seed."""
    if setup.needs_service and generate is None:
        raise ValueError("the generated methods need a service to generate from")
    pool_images, pool_labels = (
        (dataset.train_images, dataset.train_labels) if user_data is None else user_data[:2]
    )
    full_counts = np.bincount(pool_labels, minlength=NUM_CLASSES)
    target_prior = log_prior(pool_labels)  # the balanced deployment's prior
    results = {name: MethodResult() for name in setup.methods}
    generated: dict[str, Any] = {"images": 0, "acceptance_rate": []}
    for seed in setup.seeds:
        recipe = ClassifierRecipe(epochs=setup.classifier_epochs, seed=seed)
        idx = skewed_indices(pool_labels, setup, seed) if user_data is None else user_data[2]
        images, labels = pool_images[idx], pool_labels[idx]
        sets: dict[TrainingSet, tuple[np.ndarray, np.ndarray]] = {}
        trained: dict[tuple[object, ...], DigitClassifier] = {}
        for name in setup.methods:
            method = METHODS[name]
            if method.data not in sets:
                sets[method.data] = _training_set(
                    method.data, images, labels, (pool_images, pool_labels), full_counts, seed,
                    setup, generate, generated,
                )  # fmt: skip
            x, y = sets[method.data]
            logits = _method_logits(method, x, y, images, labels, dataset, recipe, trained)
            if method.prior_correction:
                logits = logits + (target_prior - log_prior(y))
            acc, recall = score(logits.argmax(1), dataset.test_labels)
            results[name].accuracy.append(acc)
            results[name].recall.append(recall)
            results[name].train_size.append(len(y))
            log.info("seed %d %s: %d images, accuracy %.4f", seed, name, len(y), acc)
            print(f"seed {seed} {name:<24} {len(y):>6} images  accuracy {acc:.4f}", flush=True)
    return summarize(results, setup, full_counts, {"generated": generated})


def _method_logits(
    method: Method,
    x: np.ndarray,
    y: np.ndarray,
    real_images: np.ndarray,
    real_labels: np.ndarray,
    dataset: ImageDataset,
    recipe: ClassifierRecipe,
    trained: dict[tuple[object, ...], DigitClassifier],
) -> np.ndarray:
    """Test logits of ``method``'s classifier trained on (x, y), whose first ``len(real_labels)``
    rows are the real skewed set; classifiers that methods share are trained once (``trained``)."""
    key = (method.data, method.loss, method.loss_prior, method.generated_weight)
    if key not in trained:
        weights = None
        if method.generated_weight != 1.0:
            weights = np.ones(len(y), np.float32)
            weights[len(real_labels) :] = method.generated_weight
        prior = real_labels if method.loss_prior == "real" else None
        trained[key] = trained_classifier(x, y, recipe, method.loss, prior, weights)
    model = trained[key]
    if method.real_head:
        model = retrain_head(
            model,
            real_images,
            real_labels,
            recipe,
            prior_adjusted_loss("logit-adjusted", real_labels),
        )
    return test_logits(model, dataset)


def _training_set(
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
    fig, ax = plt.subplots(figsize=(14, 5), dpi=120)
    width = 0.8 / len(methods)
    digits = np.arange(NUM_CLASSES)
    palette = plt.get_cmap("tab20")  # the 10 dark hues first, then their light variants
    for i, (name, m) in enumerate(methods.items()):
        recall = np.asarray(m["recall"])
        mean = recall.mean(0)
        # min..max around the mean; clipped at 0: when every seed agrees, the mean can round a
        # hair past them (3 x 0.7 averages to 0.6999...), and matplotlib refuses negative bars.
        err = np.clip(np.vstack([mean - recall.min(0), recall.max(0) - mean]), 0.0, None)
        ax.bar(
            digits + (i - (len(methods) - 1) / 2) * width,
            100 * mean,
            width,
            yerr=100 * err,
            label=f"{name} ({100 * m['accuracy_mean']:.2f}%)",
            color=palette((2 * i) % 20 + (2 * i) // 20),
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
        counts: Sequence[int], targets: Sequence[int], seed: int, min_confidence: float | None
    ) -> tuple[np.ndarray, np.ndarray, float | None]:
        with DigitsClient(url, timeout=600) as client:
            got = client.balance(
                list(counts), target=list(targets), seed=seed, min_confidence=min_confidence
            )
        return got.images, got.labels, got.acceptance_rate

    return generate
