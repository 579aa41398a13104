"""Fixtures shared by the pipeline tests: a small real classifier, once a session."""

from __future__ import annotations

import pytest

from pipeline.data.loading import ImageDataset
from pipeline.evaluation.classifier import ClassifierRecipe, EvaluationClassifier, get_classifier

# A 6,000-digit, 2-epoch classifier (about 97% on the real test set): enough to tell digits apart.
SMALL_RECIPE = ClassifierRecipe(epochs=2, train_limit=6000)


@pytest.fixture(scope="session")
def classifier(
    mnist: ImageDataset, tmp_path_factory: pytest.TempPathFactory
) -> EvaluationClassifier:
    return get_classifier(mnist, recipe=SMALL_RECIPE, cache_dir=tmp_path_factory.mktemp("cache"))
