"""Training and measuring one method's classifier: the loss its prior asks for, shared
classifiers trained once, an optional head retrained on real data, accuracy and per-class recall
on the real test set."""

from __future__ import annotations

import numpy as np

from models.classifier import DigitClassifier
from models.contract import NUM_CLASSES
from models.datasets.recipe import real_log_prior
from pipeline.data.loading import ImageDataset
from pipeline.evaluation.classifier import (
    ClassifierRecipe,
    PriorAdjustedLoss,
    predict,
    retrain_head,
    train_classifier,
)
from pipeline.experiments.methods import Loss, Method


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


def method_logits(
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
