"""Fixtures for every test: the real S3 server (tests/s3_server.py) and real MNIST."""

from __future__ import annotations

import pytest

from pipeline.data.loading import ImageDataset, load_dataset

pytest_plugins = ["tests.s3_server"]


@pytest.fixture(scope="session")
def mnist() -> ImageDataset:
    """Real MNIST from ./data/mnist (fetched by scripts/setup.sh; md5-verified on load)."""
    return load_dataset("mnist")
