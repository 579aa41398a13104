"""Fixtures shared by the pipeline tests: the real MNIST, loaded once per session."""

from __future__ import annotations

import pytest

from pipeline.data.loading import ImageDataset, load_dataset


@pytest.fixture(scope="session")
def mnist() -> ImageDataset:
    """Real MNIST from ./data/mnist (fetched by scripts/setup.sh; md5-verified on load)."""
    return load_dataset("mnist")
