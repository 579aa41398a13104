"""The training recipe that `dcgan balance` and the client carry (models/datasets/recipe.py):
its card section, offsets and arrays, and that serving imports it without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from models.datasets.recipe import (
    GENERATED_LOSS_WEIGHT,
    how_to_train,
    real_log_prior,
    training_set,
)
from models.errors import DatasetError
from tests.serving.test_client_cli import BLOCK_TORCH


def test_the_card_section_names_the_real_prior_and_the_weights() -> None:
    lines = how_to_train([30, 2, 0], [30, 30, 30])
    text = "\n".join(lines)
    assert lines[0] == "## How to train on this"
    assert "torch.tensor([30, 2, 0]" in text and "30, 30, 30" in text
    assert "logits + log_prior" in text and str(GENERATED_LOSS_WEIGHT) in text
    code = lines[lines.index("```python") + 1 : lines.index("```")]
    assert 5 <= len(code) <= 10


def test_the_offsets_are_the_real_log_prior() -> None:
    np.testing.assert_allclose(real_log_prior([3, 1, 0]), np.log([0.75, 0.25, 0.125]))
    for bad in ([], [0, 0], [3, -1]):
        with pytest.raises(DatasetError):
            real_log_prior(bad)


def test_training_set_refuses_images_that_do_not_match() -> None:
    real = np.zeros((3, 28, 28), np.uint8)
    labels = np.array([0, 1, 1])
    with pytest.raises(DatasetError, match="same pixels"):
        training_set(real, labels, np.zeros((1, 28, 28), np.float32), np.array([2]))
    with pytest.raises(DatasetError, match=r"outside 0\.\.9"):
        training_set(real, labels, np.zeros((1, 28, 28), np.uint8), np.array([10]))
    with pytest.raises(DatasetError, match="2 real images"):
        training_set(real[:2], labels, real[:1], np.array([2]))


def test_serving_imports_the_recipe_without_torch() -> None:
    code = BLOCK_TORCH + (
        "import serving.tools.client, serving.tools.datasets, serving.tools.dataset_balance\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
