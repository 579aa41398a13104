"""Train, score and cache the digit classifier that the generator metrics measure with.

The classifier for a dataset is trained once per (dataset md5s, recipe) and cached as
``cache_dir/classifiers/<dataset fingerprint>-<recipe hash>.pt``. The file holds only tensors and
plain values, so it is read with ``torch.load(weights_only=True)``; it is written to a temporary
name and renamed, so a crash never leaves a half-written cache. A cache that cannot be read or
does not match the dataset or recipe is trained again, never trusted and never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from models.classifier import CLASSIFIER_VERSION, ClassifierConfig, DigitClassifier
from pipeline.checkpoint import save_torch_atomic
from pipeline.data.loading import ImageDataset
from pipeline.precision import Precision, PrecisionDecision, decide
from pipeline.settings import PrecisionChoice, get_settings

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass(frozen=True)
class ClassifierRecipe:
    """How the classifier is trained. Every field goes into the cache key.

    ``precision`` "auto" is resolved for the device (``resolved``) before training or hashing, so
    a classifier trained in bf16 and one trained in fp32 never share a cache entry.
    """

    # 3 epochs: 99.26% real-test accuracy on MNIST in fp32 (5 epochs: 99.36%, at 5/3 the time:
    # 134 s instead of about 80 s on a 2-core AVX2 CPU, which kept the demo over 10 minutes).
    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-3  # peak of a one-cycle schedule (Adam)
    weight_decay: float = 1e-4
    seed: int = 0
    train_limit: int | None = None  # None: the whole training split; tests use a subset
    precision: PrecisionChoice = "auto"  # bf16 autocast only where native (pipeline.precision)
    model: ClassifierConfig = field(default_factory=ClassifierConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.train_limit is not None and self.train_limit < self.model.num_classes:
            raise ValueError(f"train_limit must be >= {self.model.num_classes}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def precision_on(self, device: torch.device | str) -> Precision:
        """The precision this recipe trains in on ``device`` (fp32 or bf16, never auto)."""
        return decide(device, self.precision).precision

    def resolved(self, device: torch.device | str) -> ClassifierRecipe:
        """This recipe with ``precision`` decided for ``device``: what the cache key hashes."""
        return replace(self, precision=self.precision_on(device))

    @property
    def hash(self) -> str:
        """Short stable hash of the recipe and the classifier layout version."""
        text = json.dumps({"v": CLASSIFIER_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- tensors --------------------------------------------------------------------------------


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 pixels (N, 28, 28) or float in [-1, 1] (N, [1,] 28, 28) -> float32 (N, 1, 28, 28)."""
    x = torch.as_tensor(images)
    x = x.float().div_(127.5).sub_(1.0) if x.dtype == torch.uint8 else x.float()
    if x.ndim == 3:
        x = x[:, None]
    assert x.ndim == 4 and x.shape[1:] == (1, 28, 28), f"expected (N, 1, 28, 28), got {x.shape}"
    return x


@dataclass(frozen=True)
class PriorAdjustedLoss:
    """Cross-entropy adjusted for a skewed label prior: the long-tail baselines of the balancing
    experiment. The evaluation classifier never uses it (plain cross-entropy), so it is not part
    of the recipe or the cache key.

    ``class_weights`` weigh each class's loss (class-weighted loss); ``logit_offsets`` are added
    to the logits during training only (the logit-adjusted loss of Menon et al. 2021: tau * log
    prior), so the trained model's plain logits are already corrected for the prior.
    """

    class_weights: tuple[float, ...] | None = None
    logit_offsets: tuple[float, ...] | None = None


class EvaluationClassifier(NamedTuple):
    """A trained classifier, its accuracy on the real test split and the precision it trained in."""

    model: DigitClassifier
    test_accuracy: float
    precision: Precision


@torch.inference_mode()
def predict(
    model: DigitClassifier,
    images: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, classes) and features (N, feature_dim), float32, in eval mode.

    Runs in float32 (no autocast): metrics should not move with the precision of the host.
    """
    device = torch.device(device)
    x = to_input(images)
    was_training = model.training
    model.eval()
    logits, feats = [], []
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device)
            f = model.features(xb.contiguous(memory_format=torch.channels_last))
            logits.append(model.head(f).float().cpu())
            feats.append(f.float().cpu())
    finally:
        model.train(was_training)
    k, d = model.cfg.num_classes, model.cfg.feature_dim
    if not logits:
        return np.zeros((0, k), np.float32), np.zeros((0, d), np.float32)
    return torch.cat(logits).numpy(), torch.cat(feats).numpy()


def accuracy(
    model: DigitClassifier,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    device: torch.device | str = "cpu",
) -> float:
    logits, _ = predict(model, images, device)
    return float((logits.argmax(1) == np.asarray(labels)).mean())


# --- training -------------------------------------------------------------------------------


def train_classifier(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    recipe: ClassifierRecipe | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    loss: PriorAdjustedLoss | None = None,
    sample_weights: np.ndarray | None = None,
) -> DigitClassifier:
    """Train a fresh classifier on resident tensors (uint8 pixels or floats in [-1, 1]).

    Used for the evaluation classifier (real data) and for train-on-synthetic (generated data).
    ``sample_weights`` (N,), >= 0: each image's weight in the loss (generated rows down-weighted
    by the balancing experiment); a batch's loss is its weighted mean.
    Seeded from ``recipe.seed`` inside a forked RNG, so the caller's global RNG is untouched.
    """
    device = torch.device(device)
    recipe = (recipe or ClassifierRecipe()).resolved(device)
    precision = decide(device, recipe.precision)
    x = to_input(images).to(device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(device)
    assert len(x) == len(y), f"{len(x)} images but {len(y)} labels"
    steps = recipe.epochs * -(-len(x) // recipe.batch_size)
    terms = _LossTerms.of(loss or PriorAdjustedLoss(), device, sample_weights, len(y))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe.seed)
        shuffle = torch.Generator().manual_seed(recipe.seed)
        model = DigitClassifier(recipe.model).to(device)
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
        model.train()
        with tqdm(total=steps, desc="classifier", disable=None if progress else True) as bar:
            for epoch in range(recipe.epochs):
                t0 = time.perf_counter()
                order = torch.randperm(len(x), generator=shuffle).to(device)
                mean = _train_epoch(model, opt, sched, x, y, order, recipe, precision, bar, terms)
                log.info(
                    "classifier epoch %d/%d loss=%.4f time=%.1fs",
                    epoch + 1, recipe.epochs, mean, time.perf_counter() - t0,
                )  # fmt: skip
    return model.eval()


class _LossTerms(NamedTuple):
    weights: torch.Tensor | None
    offsets: torch.Tensor | None
    sample_weights: torch.Tensor | None

    @classmethod
    def of(
        cls,
        loss: PriorAdjustedLoss,
        device: torch.device,
        sample_weights: np.ndarray | None = None,
        count: int = 0,
    ) -> _LossTerms:
        def tensor(values: tuple[float, ...] | None) -> torch.Tensor | None:
            return None if values is None else torch.tensor(values, device=device)

        per_sample = None
        if sample_weights is not None:
            w = np.asarray(sample_weights, dtype=np.float32)
            if w.shape != (count,) or not np.all(np.isfinite(w)) or (w < 0).any():
                raise ValueError(f"sample_weights must be {count} finite values >= 0")
            per_sample = torch.from_numpy(w).to(device)
        return cls(tensor(loss.class_weights), tensor(loss.logit_offsets), per_sample)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of one batch with these terms (``idx``: the batch's rows)."""
        if self.offsets is not None:
            logits = logits + self.offsets
        if self.sample_weights is None:
            return F.cross_entropy(logits, labels, weight=self.weights)
        per_row = F.cross_entropy(logits, labels, weight=self.weights, reduction="none")
        w = self.sample_weights[idx]
        return (per_row * w).sum() / w.sum().clamp_min(1e-12)


def retrain_head(
    model: DigitClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    recipe: ClassifierRecipe | None = None,
    loss: PriorAdjustedLoss | None = None,
    device: torch.device | str = "cpu",
) -> DigitClassifier:
    """A copy of ``model`` whose last layer is trained anew on (images, labels), its features
    frozen: classifier re-training (Kang et al. 2020, "decoupling"), here on the user's real
    images after the body learnt from a filled set. The features are computed once, in eval mode
    (no dropout); the head trains for the recipe's epochs and batch size at its peak lr."""
    import copy

    device = torch.device(device)
    recipe = recipe or ClassifierRecipe()
    _, feats = predict(model, images, device)
    f = torch.from_numpy(feats).to(device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(device)
    terms = _LossTerms.of(loss or PriorAdjustedLoss(), device)
    out = copy.deepcopy(model).to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe.seed)
        shuffle = torch.Generator().manual_seed(recipe.seed)
        out.head.reset_parameters()
        opt = torch.optim.Adam(
            out.head.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
        )
        for _ in range(recipe.epochs):
            order = torch.randperm(len(f), generator=shuffle).to(device)
            for start in range(0, len(order), recipe.batch_size):
                idx = order[start : start + recipe.batch_size]
                batch_loss = terms.loss(out.head(f[idx]), y[idx], idx)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
    return out.eval()


def _train_epoch(
    model: DigitClassifier,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor,
    recipe: ClassifierRecipe,
    precision: PrecisionDecision,
    bar: tqdm,
    terms: _LossTerms,
) -> float:
    """One pass over ``order`` in batches; returns the mean training loss."""
    total = torch.zeros((), device=x.device)
    for start in range(0, len(order), recipe.batch_size):
        idx = order[start : start + recipe.batch_size]
        xb = x[idx].contiguous(memory_format=torch.channels_last)  # (B, 1, 28, 28)
        with precision.autocast(x.device):
            loss = terms.loss(model(xb), y[idx], idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        total += loss.detach().float() * len(idx)
        bar.update()
    return total.item() / max(len(order), 1)


# --- cache ----------------------------------------------------------------------------------


def cache_path(
    dataset: ImageDataset,
    recipe: ClassifierRecipe,
    cache_dir: Path | None,
    device: torch.device | str = "cpu",
) -> Path:
    """Where the classifier of ``recipe`` (precision resolved for ``device``) is cached."""
    root = cache_dir if cache_dir is not None else get_settings().cache_dir
    return root / "classifiers" / f"{dataset.fingerprint}-{recipe.resolved(device).hash}.pt"


def _load_cached(
    path: Path, dataset: ImageDataset, recipe: ClassifierRecipe
) -> tuple[DigitClassifier, float] | None:
    """The cached model and its test accuracy, or None when absent, unreadable or stale."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload["format"] != CACHE_FORMAT or payload["dataset_md5"] != dataset.md5:
            raise ValueError("dataset md5s or cache format differ")
        if payload["recipe_hash"] != recipe.hash:
            raise ValueError("recipe differs")
        model = _from_state(recipe, payload["state_dict"])
        test_accuracy = float(payload["test_accuracy"])
    except Exception as exc:  # any unreadable cache is retrained, whatever broke it
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("classifier cache %s is unusable (%s); retraining", path, reason)
        return None
    return model, test_accuracy


def _from_state(recipe: ClassifierRecipe, state: dict[str, torch.Tensor]) -> DigitClassifier:
    """A CPU model in eval mode from a state dict. A freshly trained classifier goes through
    here too, so it computes bit for bit what the same classifier loaded from cache computes."""
    model = DigitClassifier(recipe.model)
    model.load_state_dict(state)  # strict: a layout that does not fit raises
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model.eval()


def get_classifier(
    dataset: ImageDataset,
    device: torch.device | str = "cpu",
    recipe: ClassifierRecipe | None = None,
    cache_dir: Path | None = None,
    retrain: bool = False,
    progress: bool = False,
) -> EvaluationClassifier:
    """The evaluation classifier for ``dataset``, its accuracy on the real test split and its
    training precision.

    Loads ``cache_dir/classifiers/<fingerprint>-<recipe hash>.pt`` when it is valid (cache_dir
    defaults to the pipeline settings' cache_dir); otherwise trains on the training split, scores
    on the test split and writes the cache.
    """
    recipe = (recipe or ClassifierRecipe()).resolved(device)
    precision = recipe.precision_on(device)
    path = cache_path(dataset, recipe, cache_dir, device)
    cached = None if retrain else _load_cached(path, dataset, recipe)
    if cached is not None:
        log.info("classifier loaded from %s (test accuracy %.4f)", path, cached[1])
        return EvaluationClassifier(cached[0].to(device), cached[1], precision)
    images, labels = dataset.train_subset(recipe.train_limit, seed=recipe.seed)
    t0 = time.perf_counter()
    trained = train_classifier(images, labels, recipe, device, progress)
    train_s = time.perf_counter() - t0
    state = {k: v.detach().cpu().contiguous() for k, v in trained.state_dict().items()}
    model = _from_state(recipe, state).to(device)
    test_accuracy = accuracy(model, dataset.test_images, dataset.test_labels, device)
    log.info("classifier trained in %.1fs, test accuracy %.4f", train_s, test_accuracy)
    save_torch_atomic(
        path,
        {
            "format": CACHE_FORMAT,
            "dataset": dataset.name,
            "dataset_md5": dict(dataset.md5),
            "recipe": recipe.to_dict(),
            "recipe_hash": recipe.hash,
            "test_accuracy": test_accuracy,
            "train_seconds": train_s,
            "state_dict": state,
        },
    )
    return EvaluationClassifier(model, test_accuracy, precision)
