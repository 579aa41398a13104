"""Balancing a skewed dataset with generated digits, against the long-tail literature's cheap
baselines, the skewed set itself and the full set: every method for every seed.

One module a job: methods.py (the methods, what each trains on, and the setup), training_sets.py
(the skewed set and what each method adds to it), classifiers.py (a method's classifier trained
and measured), report.py (means, gap closed, table, plot), service.py (generated digits from a
running service); this one runs them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from models.classifier import DigitClassifier
from models.contract import NUM_CLASSES
from pipeline.data.loading import ImageDataset
from pipeline.evaluation.classifier import ClassifierRecipe
from pipeline.experiments.classifiers import log_prior, method_logits, prior_adjusted_loss, score
from pipeline.experiments.methods import METHODS, BalanceSetup, TrainingSet
from pipeline.experiments.report import MethodResult, plot_recall, summarize
from pipeline.experiments.service import service_generator
from pipeline.experiments.training_sets import Generate, skewed_indices, training_set

log = logging.getLogger("dcgan.experiments.balance")


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
                sets[method.data] = training_set(
                    method.data, images, labels, (pool_images, pool_labels), full_counts, seed,
                    setup, generate, generated,
                )  # fmt: skip
            x, y = sets[method.data]
            logits = method_logits(method, x, y, images, labels, dataset, recipe, trained)
            if method.prior_correction:
                logits = logits + (target_prior - log_prior(y))
            acc, recall = score(logits.argmax(1), dataset.test_labels)
            results[name].accuracy.append(acc)
            results[name].recall.append(recall)
            results[name].train_size.append(len(y))
            log.info("seed %d %s: %d images, accuracy %.4f", seed, name, len(y), acc)
            print(f"seed {seed} {name:<24} {len(y):>6} images  accuracy {acc:.4f}", flush=True)
    return summarize(results, setup, full_counts, {"generated": generated})


__all__ = [
    "METHODS",
    "BalanceSetup",
    "Generate",
    "log_prior",
    "plot_recall",
    "prior_adjusted_loss",
    "run_balance_experiment",
    "service_generator",
    "skewed_indices",
]
