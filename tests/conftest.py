"""Fixtures for every test: the real S3 server (tests/s3_server.py) and real MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.data.loading import ImageDataset, load_dataset

pytest_plugins = ["tests.s3_server"]


@pytest.fixture(scope="session")
def mnist() -> ImageDataset:
    """Real MNIST from ./data/mnist (fetched by scripts/setup.sh; md5-verified on load)."""
    return load_dataset("mnist")


@pytest.fixture(scope="session")
def evaluation_classifier_file(mnist: ImageDataset) -> Path:
    """The default evaluation classifier, trained once per test session into the cache every
    ``dcgan`` command run from the repository uses (./.cache), and its file.

    The retrain tests (flow, stack, compose) all evaluate with it: the compose test copies the
    file into the worker's cache volume, so a CI run trains it once, not once per environment.
    """
    from filelock import FileLock

    from pipeline.evaluation.classifier import ClassifierRecipe, cache_path, get_classifier
    from pipeline.settings import get_settings

    cache_dir = get_settings().cache_dir
    path = cache_path(mnist, ClassifierRecipe(), cache_dir, "cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):  # one pytest-xdist worker trains it, the other loads it
        get_classifier(mnist, "cpu", cache_dir=cache_dir)
    assert path.is_file(), path
    return path.resolve()


# The longest test files (measured on 2 cores: the compose stack, the Prefect flows, the benchmark
# smoke runs), run first: with two pytest-xdist workers, a long test that starts last is the
# whole run's tail. Sorting is stable, so each file keeps its own order.
LONG_RUNNING = (
    "tests/compose/",
    "tests/test_stack_e2e.py",
    "tests/pipeline/test_flow.py",
    "tests/test_benchmarks_smoke.py",
    "tests/pipeline/test_quality.py",
    "tests/serving/test_filtering.py",
    "tests/pipeline/test_publish.py",
    "tests/test_cli.py",
    "tests/serving/test_fuzz.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_RUNNING))
