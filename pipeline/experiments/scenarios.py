"""Where the generator's knowledge comes from: the information boundary of each balancing run.

A user who balances a skewed dataset has a generator that never saw the rare images the skewed
set lacks. Each scenario fixes what the user's skewed set, its "full" ceiling, the generator and
the filter's classifier may learn from (``Boundary``):

- ``own-data``: the user trains the generator on the skewed set itself (the generator and the
  filter's classifier see exactly what the skewed classifier sees);
- ``public``: the training split is cut into two disjoint, class-stratified halves; the user's
  skewed set and its ceiling come from one, the generator and its filter learn from the other
  (a public dataset of the same kind, disjoint from the user's);
- ``oracle``: the generator and its filter learn from the whole training split, including the
  rare images the skewed set was denied. An **upper bound**, never a user's situation.

A generator is trained once per scenario and dataset, on the split of ``split_seed``; the
classifier seeds of the experiment then vary only the classifier, never the skewed set, so no seed
gets a generator that saw its denied images. The fills are generated in-process with the
project's latent contract (``models.contract``), filtered as the service filters (each image
its first candidate read as its class with ``min_confidence``), by a classifier within the same
boundary.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from models.classifier import DigitClassifier
from models.contract import DEFAULT_MAX_CANDIDATES, NUM_CLASSES, candidate_latent, to_uint8
from models.netconfig import GANConfig
from pipeline.data.loading import ImageDataset
from pipeline.evaluation.classifier import ClassifierRecipe, predict, train_classifier
from pipeline.experiments.balance import (
    BalanceSetup,
    Generate,
    prior_adjusted_loss,
    run_balance_experiment,
    skewed_indices,
)
from pipeline.train import resolve_device, train
from pipeline.train_config import TrainConfig

log = logging.getLogger("dcgan.experiments.scenarios")

Scenario = Literal["own-data", "public", "oracle"]
SCENARIOS: tuple[Scenario, ...] = ("own-data", "public", "oracle")
# What each part learnt from, in words, written into every result beside the counts.
_METHODS_AND_JUDGES = (
    "; each method's classifier learnt only from its own training set (the skewed set, plus "
    "generated rows where the method says so) and is scored on the test split; the two judges of "
    "the generator (trained on the whole training split) only judge and feed no method"
)
BOUNDARY_STATEMENTS: dict[Scenario, str] = {
    "own-data": "the generator and the filter's classifier learnt only from the skewed set"
    + _METHODS_AND_JUDGES,
    "public": "the generator and the filter's classifier learnt only from the other half of the "
    "training split, disjoint from the user's skewed set and its ceiling" + _METHODS_AND_JUDGES,
    "oracle": "UPPER BOUND, not a user's case: the generator and the filter's classifier learnt "
    "from the whole training split, including the rare images the skewed set was denied"
    + _METHODS_AND_JUDGES,
}

# `--url`: the experiment cannot see what a served model learnt, only what its evaluation names.
SERVICE_STATEMENT = (
    "UPPER BOUND, not a user's case: the generator and the filter's classifier are the running "
    "service's model (its evaluation names the dataset {trained_on}); a model this project's flow "
    "publishes learnt from the whole training split, including the rare images the skewed set was "
    "denied" + _METHODS_AND_JUDGES
)


def service_boundary(trained_on: str | None) -> dict[str, object]:
    """The boundary of a run that fills from a running service (``--url``), always labelled an
    upper bound: nothing the experiment can check shows the model never saw the denied images."""
    return {
        "scenario": "service",
        "upper_bound": True,
        "statement": SERVICE_STATEMENT.format(trained_on=trained_on or "(none named)"),
        "generator_trained_on": trained_on,
    }


@dataclass(frozen=True)
class Boundary:
    """What one scenario lets each part learn from (uint8 images, int64 labels)."""

    scenario: Scenario
    pool: tuple[np.ndarray, np.ndarray]  # the user's data: its skewed set and "full" ceiling
    skewed: np.ndarray  # indices into ``pool``: the user's skewed set
    generator_data: tuple[np.ndarray, np.ndarray]  # what the generator and its filter learn

    @property
    def upper_bound(self) -> bool:
        return self.scenario == "oracle"

    def describe(self) -> dict[str, object]:
        gen_counts = np.bincount(self.generator_data[1], minlength=NUM_CLASSES)
        return {
            "scenario": self.scenario,
            "upper_bound": self.upper_bound,
            "statement": BOUNDARY_STATEMENTS[self.scenario],
            "pool_images": len(self.pool[1]),
            "skewed_counts": np.bincount(self.pool[1][self.skewed], minlength=NUM_CLASSES).tolist(),
            "generator_counts": gen_counts.tolist(),
        }


def stratified_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the indices, each holding half of every class."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for digit in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        first.append(idx[: len(idx) // 2])
        second.append(idx[len(idx) // 2 :])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def boundary(
    dataset: ImageDataset, scenario: Scenario, setup: BalanceSetup, split_seed: int = 0
) -> Boundary:
    """The data each part of ``scenario`` may see."""
    images, labels = dataset.train_images, dataset.train_labels
    if scenario == "public":
        user, public = stratified_halves(labels, split_seed)
        pool = (images[user], labels[user])
        skewed = skewed_indices(pool[1], setup, split_seed)
        return Boundary(scenario, pool, skewed, (images[public], labels[public]))
    skewed = skewed_indices(labels, setup, split_seed)
    if scenario == "own-data":
        return Boundary(scenario, (images, labels), skewed, (images[skewed], labels[skewed]))
    return Boundary(scenario, (images, labels), skewed, (images, labels))


def subset_dataset(dataset: ImageDataset, images: np.ndarray, labels: np.ndarray) -> ImageDataset:
    """``dataset`` with its training split replaced (the test split kept), identified by a hash
    of the subset's content."""
    digest = hashlib.sha256(images.tobytes() + labels.astype(np.int64).tobytes()).hexdigest()
    return ImageDataset(
        name=dataset.name,
        train_images=images,
        train_labels=labels.astype(np.int64),
        test_images=dataset.test_images,
        test_labels=dataset.test_labels,
        md5={"train-subset-sha256": digest},
        class_names=dataset.class_names,
    )


def train_generator(
    dataset: ImageDataset, data: tuple[np.ndarray, np.ndarray], cfg: TrainConfig, out_dir: Path
) -> tuple[nn.Module, GANConfig, list[dict[str, object]]]:
    """A generator trained on ``data`` only (resumed if ``out_dir`` holds a finished run)."""
    subset = subset_dataset(dataset, *data)
    resume = out_dir / "checkpoint.pt"
    result = train(cfg, subset, out_dir, resume=resume if resume.exists() else None, progress=False)
    return result.generator.eval(), result.gan_config, list(result.history)


def filter_classifier(
    data: tuple[np.ndarray, np.ndarray], recipe: ClassifierRecipe
) -> DigitClassifier:
    """The filter's judge, trained within the boundary: on skewed data with the logit-adjusted
    loss (so its plain logits are corrected for the skew), which is plain cross-entropy on
    balanced data up to a constant."""
    images, labels = data
    return train_classifier(
        images, labels, recipe, loss=prior_adjusted_loss("logit-adjusted", labels)
    )


def local_generator(
    generator: nn.Module,
    cfg: GANConfig,
    judge: DigitClassifier,
    device: torch.device | str = "cpu",
) -> Generate:
    """``Generate`` for the experiment from an in-process generator: each class filled up to its
    target; with ``min_confidence`` each image is its first of ``DEFAULT_MAX_CANDIDATES`` candidates
    that ``judge`` reads as its class that confidently (an image with none is left out)."""

    @torch.inference_mode()
    def render(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(labels), 1000):
            zb = torch.from_numpy(z[start : start + 1000]).to(device)
            lb = torch.from_numpy(labels[start : start + 1000]).to(device)
            out.append(generator(zb, lb if cfg.conditional else None).float().cpu().numpy())
        return to_uint8(np.concatenate(out))[:, 0]

    def generate(
        counts: Sequence[int], targets: Sequence[int], seed: int, min_confidence: float | None
    ) -> tuple[np.ndarray, np.ndarray, float | None]:
        deficits = [max(0, int(t) - int(c)) for t, c in zip(targets, counts, strict=True)]
        labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), deficits)
        n = len(labels)
        if min_confidence is None:
            return render(candidate_latent(seed, 0, n, cfg.latent_dim), labels), labels, None
        pixels = np.zeros((n, cfg.image_size, cfg.image_size), np.uint8)
        waiting, drawn = np.arange(n), 0
        for k in range(DEFAULT_MAX_CANDIDATES):
            if not len(waiting):
                break
            z = candidate_latent(seed, k, n, cfg.latent_dim)[waiting]
            candidates = render(z, labels[waiting])
            logits, _ = predict(judge, candidates, device)
            shifted = logits - logits.max(1, keepdims=True)
            prob = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
            ok = prob[np.arange(len(waiting)), labels[waiting]] >= min_confidence
            pixels[waiting[ok]] = candidates[ok]
            drawn += len(waiting)
            waiting = waiting[~ok]
        kept = np.setdiff1d(np.arange(n), waiting)
        if len(waiting):
            log.warning("%d of %d images found no accepted candidate: left out", len(waiting), n)
        return pixels[kept], labels[kept], (len(kept) / drawn if drawn else 1.0)

    return generate


def generator_quality(
    generator: nn.Module, cfg: GANConfig, dataset: ImageDataset, rare: Sequence[int]
) -> dict[str, object]:
    """The rare classes' own quality, judged by both of the project's classifiers (trained on the
    whole real training split: judges only, never a method's input) and per-class FD."""
    from pipeline.evaluation.metrics import evaluate_generator

    report = evaluate_generator(generator, cfg, dataset, num_samples=10_000, tstr_count=0)
    ours = report.per_class_accuracy or []
    second = report.independent.per_class_accuracy if report.independent else []
    fd = report.per_class_fd or []
    return {
        "accuracy": report.accuracy,
        "fd": report.fd,
        "rare_accuracy": float(np.mean([ours[c] for c in rare])),
        "rare_independent_accuracy": float(np.mean([second[c] for c in rare])) if second else None,
        "rare_fd": float(np.mean([fd[c] for c in rare if fd[c] is not None])),
        "per_class_accuracy": ours,
        "per_class_independent_accuracy": second,
        "per_class_fd": fd,
    }


def run_scenario(
    dataset: ImageDataset,
    scenario: Scenario,
    setup: BalanceSetup,
    cfg: TrainConfig,
    work_dir: Path,
) -> dict[str, Any]:
    """The balancing experiment within ``scenario``'s boundary: a generator trained (once) on
    what the scenario allows, its fills filtered by a classifier within the same boundary."""
    limits = boundary(dataset, scenario, setup)
    extra: dict[str, Any] = {"boundary": limits.describe()}
    generate = None
    if setup.needs_service:
        run_dir = work_dir / f"{dataset.name}-{scenario}"
        generator, gan_cfg, history = train_generator(dataset, limits.generator_data, cfg, run_dir)
        judge = filter_classifier(
            limits.generator_data, ClassifierRecipe(epochs=setup.classifier_epochs)
        )
        generate = local_generator(generator, gan_cfg, judge, resolve_device(cfg.device))
        extra["generator"] = {
            "train_config": cfg.model_dump(),
            "last_epoch": history[-1],
            "quality": generator_quality(generator, gan_cfg, dataset, setup.rare),
        }
    results = run_balance_experiment(dataset, generate, setup, (*limits.pool, limits.skewed))
    return {**results, **extra}
