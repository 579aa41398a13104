"""Metrics of a generator, measured with the evaluation classifier, and the quality gate.

Generated digits come from ``pipeline.sampling.generate`` with a fixed seed and are rounded to the
uint8 pixels a client receives, so a metric is a reproducible function of the generator and
measures what is served. Real references are the 10,000 test digits; the "floor" is the same
metric between 10,000 training digits and the test digits, the best a generator can hope for.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.classifier import DigitClassifier
from models.contract import labels_for_request, to_uint8
from models.fileio import write_atomic
from models.netconfig import GANConfig
from pipeline.data.loading import ImageDataset
from pipeline.evaluation import stats
from pipeline.evaluation.classifier import (
    ClassifierRecipe,
    EvaluationClassifier,
    accuracy,
    get_classifier,
    predict,
    train_classifier,
)
from pipeline.evaluation.independent import IndependentScore, independent_score
from pipeline.evaluation.options import (
    EVAL,
    MAX_ACCURACY_DROP,
    MAX_FD_SHARE,
    MIN_CLASS_ENTROPY,
    MIN_DIVERSITY_RATIO,
)
from pipeline.sampling import generate
from pipeline.settings import get_settings

log = logging.getLogger(__name__)

EVAL_SEED = 20_240_601  # latents of the metric samples; fixed so metrics are comparable
TSTR_SEED = EVAL_SEED + 1  # train-on-synthetic uses other latents than the metric samples
REAL_SUBSET_SEED = 0  # which 10,000 training digits make the floor (and the noise on them)
NOISE_STD = 25.5  # pixel noise of the FD yardstick: 10% of the 0..255 range
FLOOR_SAMPLES = 10_000  # training digits of the floor and of the yardstick


@dataclass(frozen=True)
class RealReference:
    """Classifier statistics of the real digits, computed once per classifier and reused."""

    test_features: np.ndarray  # (10000, D)
    test_labels: np.ndarray  # (10000,)
    mu: np.ndarray
    sigma: np.ndarray
    fd_floor: float  # 10,000 training digits vs the test digits
    # The same training digits with Gaussian pixel noise (NOISE_STD): the yardstick of the
    # relative FD gate, in the classifier's own feature scale (a generator must be closer).
    fd_noisy: float
    inception_score: float  # of the test digits


def real_reference(
    classifier: DigitClassifier,
    dataset: ImageDataset,
    device: torch.device | str = "cpu",
    floor_samples: int = FLOOR_SAMPLES,
) -> RealReference:
    logits, feats = predict(classifier, dataset.test_images, device)
    train_images, _ = dataset.train_subset(floor_samples, seed=REAL_SUBSET_SEED)
    _, train_feats = predict(classifier, train_images, device)
    mu, sigma = stats.gaussian_stats(feats)

    noise = np.random.default_rng(REAL_SUBSET_SEED).normal(0.0, NOISE_STD, train_images.shape)
    noisy = np.clip(train_images + noise, 0, 255).astype(np.uint8)
    _, noisy_feats = predict(classifier, noisy, device)
    return RealReference(
        test_features=feats,
        test_labels=dataset.test_labels,
        mu=mu,
        sigma=sigma,
        fd_floor=stats.frechet_distance(*stats.gaussian_stats(train_feats), mu, sigma),
        fd_noisy=stats.frechet_distance(*stats.gaussian_stats(noisy_feats), mu, sigma),
        inception_score=stats.inception_score(logits),
    )


# What a cached reference depends on besides the classifier's weights and the dataset: a change
# to any of these makes a new cache key.
REFERENCE_RECIPE = {
    "format": 1,
    "floor_samples": FLOOR_SAMPLES,
    "noise_std": NOISE_STD,
    "seed": REAL_SUBSET_SEED,
}
_STORED = ("test_features", "mu", "sigma", "fd_floor", "fd_noisy", "inception_score")


def _weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def reference_cache_path(
    classifier: DigitClassifier,
    dataset: ImageDataset,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
) -> Path:
    """Where the reference of this classifier (by the sha256 of its weights) and dataset is kept."""
    root = cache_dir if cache_dir is not None else get_settings().cache_dir
    recipe = dict(REFERENCE_RECIPE, device=torch.device(device).type)
    recipe_hash = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{dataset.fingerprint}-{_weights_digest(classifier)}-{recipe_hash}.npz"
    return root / "references" / name


def cached_real_reference(
    classifier: DigitClassifier,
    dataset: ImageDataset,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
) -> RealReference:
    """``real_reference``, kept on disk beside the cached classifiers: its 30,000 classifier passes
    are most of a short evaluation, and they depend only on the classifier and the dataset."""
    path = reference_cache_path(classifier, dataset, device, cache_dir)
    try:
        with np.load(path, allow_pickle=False) as stored:
            return RealReference(
                test_features=stored["test_features"],
                test_labels=dataset.test_labels,
                mu=stored["mu"],
                sigma=stored["sigma"],
                fd_floor=float(stored["fd_floor"]),
                fd_noisy=float(stored["fd_noisy"]),
                inception_score=float(stored["inception_score"]),
            )
    except FileNotFoundError:
        pass
    except Exception as exc:  # any unreadable cache is computed again, whatever broke it
        log.warning("reference cache %s is unusable (%s); computing it again", path, exc)
    ref = real_reference(classifier, dataset, device)
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(ref, name) for name in _STORED})
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as exc:  # a read-only or full cache only costs the next evaluation the time
        log.warning("could not keep the reference in %s (%s)", path, exc)
    return ref


@dataclass(frozen=True)
class GeneratorReport:
    """Everything ``evaluate_generator`` measured; JSON-ready through ``to_dict``."""

    dataset: str
    conditional: bool
    num_samples: int
    seed: int
    classifier_test_accuracy: float
    accuracy: float | None  # share classified as the requested digit (conditional only)
    per_class_accuracy: list[float] | None
    fd: float  # Frechet distance to the real test digits, classifier feature space
    fd_floor: float  # the same between real training and test digits
    fd_noisy: float  # the same with pixel noise on the training digits: the gate's yardstick
    inception_score: float
    real_inception_score: float
    class_histogram: list[float]  # share of samples predicted as each class
    class_entropy: float  # normalised: 1 = even coverage, 0 = one class
    diversity_ratio: float | None  # mean over classes of generated / real within-class spread
    min_diversity_ratio: float | None  # the worst class: within-class mode collapse shows here
    per_class_diversity_ratio: list[float] | None
    tstr_accuracy: float | None  # real test accuracy of a classifier trained on generated digits
    tstr_count: int
    seconds: dict[str, float]
    # What the classifiers trained in: {"classifier": fp32|bf16, "tstr": fp32|bf16 (if run)}.
    precision: dict[str, str] = field(default_factory=dict)
    # The second opinion of a classifier of another family (pipeline.evaluation.independent;
    # conditional only; None in reports written before it existed).
    independent: IndependentScore | None = None
    # Each class's own Frechet distance to its real test images (None in older reports).
    per_class_fd: list[float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorReport:
        independent = data.get("independent")
        if independent is not None:
            data = {**data, "independent": IndependentScore(**independent)}
        return cls(**data)


def served_images(
    generator: nn.Module,
    cfg: GANConfig,
    n: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 1, 28, 28) digits for the label cycle 0..9, as a client would receive them."""
    labels = labels_for_request(n, None)
    return to_uint8(generate(generator, cfg, seed, labels, device)), labels


def train_on_synthetic(
    generator: nn.Module,
    cfg: GANConfig,
    dataset: ImageDataset,
    count: int = EVAL.tstr_count,
    epochs: int = EVAL.tstr_epochs,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> float:
    """TSTR: train a fresh classifier on ``count`` generated digits (balanced labels), score it
    on the real test digits. A generator that covers each class as richly as real data scores
    close to a classifier trained on real data; one that is right but monotonous does not."""
    if not cfg.conditional:
        raise ValueError("train-on-synthetic needs a conditional generator (labels to learn)")
    images, labels = served_images(generator, cfg, count, TSTR_SEED, device)
    return accuracy_trained_on(images, labels, dataset, epochs, device, progress)


def accuracy_trained_on(
    images: np.ndarray,
    labels: np.ndarray,
    dataset: ImageDataset,
    epochs: int = EVAL.tstr_epochs,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> float:
    """The real test accuracy of a fresh classifier trained on uint8 ``images`` only."""
    recipe = ClassifierRecipe(epochs=epochs, train_limit=None)
    model = train_classifier(images, labels, recipe, device, progress)
    return accuracy(model, dataset.test_images, dataset.test_labels, device)


def conditional_scores(
    preds: np.ndarray, feats: np.ndarray, labels: np.ndarray, ref: RealReference, k: int
) -> tuple[float, list[float], np.ndarray]:
    """Images asked for as ``labels``, read by the evaluation classifier (``preds``, ``feats``):
    conditional accuracy, per class, and each class's spread against the real test images'."""
    hits = preds == labels
    per_class = [float(hits[labels == c].mean()) for c in range(k)]
    ratios = stats.diversity_ratios(feats, labels, ref.test_features, ref.test_labels, k)
    return float(hits.mean()), per_class, ratios


def evaluate_generator(
    generator: nn.Module,
    cfg: GANConfig,
    dataset: ImageDataset,
    classifier: EvaluationClassifier | None = None,
    reference: RealReference | None = None,
    device: torch.device | str = "cpu",
    num_samples: int = EVAL.samples,
    seed: int = EVAL_SEED,
    tstr_count: int = EVAL.tstr_count,
    tstr_epochs: int = EVAL.tstr_epochs,
    progress: bool = False,
    independent: bool = True,
) -> GeneratorReport:
    """Measure ``generator`` against ``dataset``'s real test digits.

    ``classifier`` comes from ``get_classifier`` (loaded or trained with the default recipe when
    omitted); ``reference`` can be passed to reuse real statistics across
    checkpoints, and is otherwise read from (or computed into) the reference cache.
    ``tstr_count=0`` skips train-on-synthetic, the slowest part; ``independent=False`` the
    second opinion (pipeline.evaluation.independent), for loops that need only the gate.
    """
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    model, clf_acc, clf_precision = classifier or get_classifier(dataset, device, progress=progress)
    precision: dict[str, str] = {"classifier": clf_precision}
    ref = reference or cached_real_reference(model, dataset, device)
    seconds["classifier_and_reference"] = time.perf_counter() - t

    t = time.perf_counter()
    images, labels = served_images(generator, cfg, num_samples, seed, device)
    seconds["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    logits, feats = predict(model, images, device)
    preds = logits.argmax(axis=1)
    k = model.cfg.num_classes
    hist = stats.class_histogram(preds, k)
    fd = stats.frechet_distance(*stats.gaussian_stats(feats), ref.mu, ref.sigma)

    acc = per_class = ratios = second = class_fd = None
    if cfg.conditional:
        acc, per_class, ratios = conditional_scores(preds, feats, labels, ref, k)
        class_fd = stats.per_class_frechet(feats, labels, ref.test_features, ref.test_labels, k)
    seconds["metrics"] = time.perf_counter() - t
    if cfg.conditional and independent:
        t = time.perf_counter()
        second = independent_score(images, labels, dataset, k)
        seconds["independent"] = time.perf_counter() - t

    tstr = None
    # As many generated digits as the real classifier learnt from (a small own dataset's TSTR
    # compares like with like and costs its size, not MNIST's), at most ``tstr_count``.
    tstr_count = min(tstr_count, len(dataset.train_labels))
    if cfg.conditional and tstr_count > 0:
        t = time.perf_counter()
        tstr = train_on_synthetic(
            generator, cfg, dataset, tstr_count, tstr_epochs, device, progress
        )
        seconds["tstr"] = time.perf_counter() - t
        precision["tstr"] = ClassifierRecipe().precision_on(device)

    report = GeneratorReport(
        dataset=dataset.name,
        conditional=cfg.conditional,
        num_samples=num_samples,
        seed=seed,
        classifier_test_accuracy=clf_acc,
        accuracy=acc,
        per_class_accuracy=per_class,
        fd=fd,
        fd_floor=ref.fd_floor,
        fd_noisy=ref.fd_noisy,
        inception_score=stats.inception_score(logits),
        real_inception_score=ref.inception_score,
        class_histogram=hist.tolist(),
        class_entropy=stats.normalized_entropy(hist),
        diversity_ratio=None if ratios is None else float(ratios.mean()),
        min_diversity_ratio=None if ratios is None else float(ratios.min()),
        per_class_diversity_ratio=None if ratios is None else ratios.tolist(),
        tstr_accuracy=tstr,
        tstr_count=tstr_count if tstr is not None else 0,
        seconds=seconds,
        precision=precision,
        independent=second,
        per_class_fd=class_fd,
    )
    log.info("generator evaluated: accuracy=%s fd=%.3f is=%.3f", acc, fd, report.inception_score)
    return report


# --- quality gate ---------------------------------------------------------------------------


def gate_thresholds(
    classifier_accuracy: float,
    fd_noisy: float,
    min_accuracy: float | None = None,
    max_fd: float | None = None,
) -> tuple[float, float]:
    """(minimum conditional accuracy, maximum FD): the given values, or the dataset-relative
    defaults from what its real-data classifier measured on real digits (see options)."""
    return (
        round(classifier_accuracy - MAX_ACCURACY_DROP, 4) if min_accuracy is None else min_accuracy,
        round(MAX_FD_SHARE * fd_noisy, 3) if max_fd is None else max_fd,
    )


def gate_failures(
    report: GeneratorReport,
    min_accuracy: float | None = None,
    max_fd: float | None = None,
    min_entropy: float = MIN_CLASS_ENTROPY,
    min_diversity: float = MIN_DIVERSITY_RATIO,
) -> list[str]:
    """One line per failed check, saying what was measured and what was required."""
    min_accuracy, max_fd = gate_thresholds(
        report.classifier_test_accuracy, report.fd_noisy, min_accuracy, max_fd
    )
    failures = []
    if report.accuracy is not None and report.accuracy < min_accuracy:
        failures.append(f"conditional accuracy {report.accuracy:.4f} < {min_accuracy}")
    if report.fd > max_fd:
        floor = report.fd_floor
        failures.append(f"Frechet distance {report.fd:.3f} > {max_fd} (floor {floor:.3f})")
    if report.class_entropy < min_entropy:
        failures.append(f"class entropy {report.class_entropy:.4f} < {min_entropy} (mode collapse)")
    worst = report.min_diversity_ratio
    if worst is not None and worst < min_diversity:
        failures.append(f"within-class diversity ratio {worst:.3f} < {min_diversity} (collapse)")
    return failures
