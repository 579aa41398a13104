"""The balancing experiment's plumbing on a small real subset, against a real running service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.registry import ModelRegistry
from pipeline.data.loading import ImageDataset
from pipeline.experiments.augment import shift_rotate
from pipeline.experiments.balance import (
    BalanceSetup,
    plot_recall,
    run_balance_experiment,
    service_generator,
    skewed_indices,
)
from serving.app import create_app
from tests.serving.conftest import settings
from tests.serving.live import serving
from tests.support.ports import free_port
from tests.test_cli import dcgan


@pytest.fixture
def url(registry: ModelRegistry, tmp_path: Path) -> Iterator[str]:
    with serving(create_app(settings(), registry, cache_dir=tmp_path / "cache")) as base:
        yield base


def test_skew_keeps_a_share_of_the_rare_classes(mnist: ImageDataset) -> None:
    setup = BalanceSetup(keep=0.01, rare=(0, 1, 2, 3, 4))
    idx = skewed_indices(mnist.train_labels, setup, seed=0)
    counts = np.bincount(mnist.train_labels[idx], minlength=10)
    full = np.bincount(mnist.train_labels, minlength=10)
    assert counts[:5].tolist() == [round(0.01 * c) for c in full[:5]]
    assert counts[5:].tolist() == full[5:].tolist()
    assert not np.array_equal(idx, skewed_indices(mnist.train_labels, setup, seed=1))


def test_augmentation_moves_pixels_but_keeps_the_digit(mnist: ImageDataset) -> None:
    images = mnist.train_images[:64]
    moved = shift_rotate(images, seed=3)
    assert moved.shape == images.shape and moved.dtype == np.uint8
    assert not np.array_equal(moved, images)
    # mass is roughly kept (shifts of <= 2 px and small rotations keep the stroke in frame)
    ratio = moved.reshape(64, -1).sum(1) / images.reshape(64, -1).sum(1)
    assert ratio.min() > 0.8 and ratio.max() < 1.2
    np.testing.assert_array_equal(moved, shift_rotate(images, seed=3))


def test_experiment_runs_every_method_against_the_service(
    mnist: ImageDataset, url: str, tmp_path: Path
) -> None:
    small = replace(
        mnist,
        train_images=mnist.train_images[:3000],
        train_labels=mnist.train_labels[:3000],
        test_images=mnist.test_images[:1000],
        test_labels=mnist.test_labels[:1000],
    )
    setup = BalanceSetup(keep=0.05, seeds=(0, 1), classifier_epochs=1)
    results = run_balance_experiment(small, service_generator(url), setup)
    methods = results["methods"]
    assert set(methods) == {"skewed", "generated", "oversampled", "full"}
    full = np.bincount(small.train_labels, minlength=10)
    assert methods["full"]["train_size"] == [3000, 3000]
    assert methods["generated"]["train_size"] == methods["oversampled"]["train_size"] == [3000] * 2
    assert methods["skewed"]["train_size"][0] < 3000 - 0.9 * full[:5].sum()
    for m in methods.values():
        assert len(m["accuracy"]) == 2 and len(m["recall_mean"]) == 10
    assert methods["full"]["accuracy_mean"] > methods["skewed"]["accuracy_mean"]
    assert methods["full"]["gap_closed"] == pytest.approx(1.0)
    assert "| generated |" in results["table"]
    plot = tmp_path / "recall.png"
    plot_recall(results, str(plot), "test")
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_experiment_command_without_a_service_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = dcgan("experiment", "balance", "--url", url, "--out", str(tmp_path))
    assert result.returncode == 2 and "cannot reach" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    bad = dcgan("experiment", "balance", "--keep", "2", "--methods", "skewed")
    assert bad.returncode == 2 and "keep must be in (0, 1]" in bad.stderr, bad.stderr
