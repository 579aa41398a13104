"""The balancing experiment's information boundaries (pipeline.experiments.scenarios): what the
user's skewed set, the generator and the filter's classifier may learn from, on real MNIST."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data.loading import ImageDataset
from pipeline.experiments.balance import BalanceSetup
from pipeline.experiments.scenarios import (
    SCENARIOS,
    boundary,
    run_scenario,
    service_boundary,
    stratified_halves,
)
from pipeline.train_config import TrainConfig

SETUP = BalanceSetup(keep=0.01, rare=(0, 1, 2, 3, 4))


def _rows(images: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in images}


def test_own_data_generator_sees_exactly_the_skewed_set(mnist: ImageDataset) -> None:
    b = boundary(mnist, "own-data", SETUP)
    images, labels = b.generator_data
    assert np.array_equal(images, b.pool[0][b.skewed])
    counts = np.bincount(labels, minlength=10)
    full = np.bincount(mnist.train_labels, minlength=10)
    assert all(counts[d] == round(0.01 * full[d]) for d in SETUP.rare)
    assert all(counts[d] == full[d] for d in range(5, 10))
    assert not b.upper_bound


def test_public_generator_never_sees_the_users_half(mnist: ImageDataset) -> None:
    b = boundary(mnist, "public", SETUP)
    user_rows, generator_rows = _rows(b.pool[0]), _rows(b.generator_data[0])
    # MNIST holds a few duplicate images; the halves are disjoint as index sets, and almost
    # every image's bytes appear on one side only.
    assert len(user_rows & generator_rows) < 0.001 * len(user_rows)
    assert len(b.pool[1]) + len(b.generator_data[1]) == len(mnist.train_labels)
    assert not b.upper_bound


def test_only_the_oracle_sees_the_denied_rare_images_and_it_says_so(mnist: ImageDataset) -> None:
    for scenario in SCENARIOS:
        b = boundary(mnist, scenario, SETUP)
        assert ("UPPER BOUND" in str(b.describe()["statement"])) == (scenario == "oracle")
        denied = np.setdiff1d(np.arange(len(b.pool[1])), b.skewed)
        denied = denied[np.isin(b.pool[1][denied], SETUP.rare)]
        seen = _rows(b.generator_data[0]) & _rows(b.pool[0][denied])
        if scenario == "oracle":
            assert b.upper_bound and len(seen) == len(_rows(b.pool[0][denied]))
            assert b.describe()["upper_bound"] is True
        else:
            assert len(seen) < 0.001 * len(denied), scenario


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=10, max_size=10), st.integers(0, 2**32 - 1))
def test_stratified_halves_are_disjoint_and_split_every_class(counts: list[int], seed: int) -> None:
    labels = np.repeat(np.arange(10), counts)
    first, second = stratified_halves(labels, seed)
    assert not set(first.tolist()) & set(second.tolist())
    assert len(first) + len(second) == len(labels)
    for digit, count in enumerate(counts):
        assert np.sum(labels[first] == digit) == count // 2


def test_a_scenario_trains_its_generator_within_its_boundary_and_fills_the_skewed_set(
    mnist: ImageDataset, tmp_path: Path
) -> None:
    small = replace(
        mnist,
        train_images=mnist.train_images[:2000],
        train_labels=mnist.train_labels[:2000],
        # its own cache key: the evaluation classifier and real statistics are cached by the md5s,
        # and one trained on 2,000 digits must never stand in for the real one in other tests
        md5={"train-images": "first-2000-of-mnist"},
    )
    setup = BalanceSetup(
        keep=0.05,
        seeds=(0,),
        classifier_epochs=1,
        min_confidence=0.0,  # accept every candidate: the fills are whole, whatever G's quality
        methods=("skewed", "generated", "generated-filtered", "generated+la-real-prior", "full"),
    )
    cfg = TrainConfig(epochs=1, batch_size=64, g_width=8, d_width=8, check_every=4)
    results = run_scenario(small, "own-data", setup, cfg, tmp_path)
    assert results["boundary"]["upper_bound"] is False
    skewed = results["boundary"]["skewed_counts"]
    assert results["boundary"]["generator_counts"] == skewed
    methods = results["methods"]
    assert methods["generated"]["train_size"] == [2000] == methods["full"]["train_size"]
    assert methods["generated-filtered"]["train_size"] == [2000]
    assert methods["skewed"]["train_size"] == [sum(skewed)]
    # the real skewed prior, not the nearly flat prior of the filled set
    la_real, la_filled = methods["generated+la-real-prior"], methods["generated-filtered"]
    assert la_real["recall"] != la_filled["recall"]
    quality = results["generator"]["quality"]
    assert len(quality["per_class_fd"]) == 10 and 0 <= quality["rare_accuracy"] <= 1
    again = run_scenario(small, "own-data", setup, cfg, tmp_path)  # the finished run is reused
    assert again["methods"] == results["methods"]


def test_a_service_s_fills_are_always_labelled_an_upper_bound() -> None:
    unnamed = service_boundary(None)
    assert unnamed["upper_bound"] is True and unnamed["scenario"] == "service"
    assert str(unnamed["statement"]).startswith("UPPER BOUND") and "(none named)" in str(
        unnamed["statement"]
    )
