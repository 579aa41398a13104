"""A second opinion on generated digits, from a classifier of another family than the project's.

Conditional accuracy measured by one classifier is that classifier's opinion: a generator can
learn the quirks that a CNN keys on (an outside CNN once read 95.8% of the demo model's digits as
asked while ours reported 97.55%). This one shares no code, weights, training or architecture with
`pipeline.evaluation.classifier`: the 50 principal components of the raw pixels and the 5 nearest
real training images, distance-weighted (scikit-learn), deterministic, fitted in seconds. It reads
real test images less well than the CNN (MNIST about 97.6%, Fashion-MNIST about 85.8%), so its
figure is compared with its own real-test accuracy, not with the CNN's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.data.loading import ImageDataset

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

METHOD = "PCA(50) of pixels + 5-NN, distance-weighted (scikit-learn)"
COMPONENTS, NEIGHBOURS = 50, 5


@dataclass(frozen=True)
class IndependentScore:
    """What the independent classifier says about real test images and generated ones."""

    method: str
    test_accuracy: float  # on the dataset's real test images: this classifier's ceiling
    accuracy: float  # share of generated images read as the class asked for
    per_class_accuracy: list[float]


def _pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, [1,] H, W) as float32 rows in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def fit(dataset: ImageDataset) -> Pipeline:
    """The classifier, fitted on all of ``dataset``'s real training images. (scikit-learn is
    imported here: the metrics import this module where it is absent, e.g. the GPU check.)"""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        PCA(COMPONENTS, svd_solver="randomized", random_state=0),
        KNeighborsClassifier(NEIGHBOURS, weights="distance", algorithm="brute"),
    )
    model.fit(_pixels(dataset.train_images), dataset.train_labels)
    return model


def independent_score(
    images: np.ndarray,
    labels: np.ndarray,
    dataset: ImageDataset,
    num_classes: int,
    model: Pipeline | None = None,
) -> IndependentScore:
    """Score uint8 generated ``images`` asked for as ``labels`` (and the real test set);
    ``model``: one already fitted on ``dataset`` (default: fitted here), to judge many batches."""
    model = fit(dataset) if model is None else model
    test_hits = model.predict(_pixels(dataset.test_images)) == dataset.test_labels
    hits = model.predict(_pixels(images)) == labels
    per_class = [float(hits[labels == c].mean()) for c in range(num_classes)]
    return IndependentScore(METHOD, float(test_hits.mean()), float(hits.mean()), per_class)
