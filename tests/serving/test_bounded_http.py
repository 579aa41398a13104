"""Bounded filtered requests over real HTTP (issue 29): a failed filtered request is counted
with the candidates it drew, a refusal names the most images a filtered request may ask for
(X-Max-Filtered-Images), and the Python client splits a filtered /balance the server refuses
into parts, deterministically (serving.tools.client.part_seed)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.contract import labels_for_request
from models.registry import LocalStore, ModelRegistry
from serving.api.app import create_app
from serving.core.generation import Plan, run_plan
from serving.tools.client import DigitsClient, part_seed
from tests.serving.conftest import FILTERED, MODEL, settings
from tests.serving.live import serving
from tests.serving.test_bounded_filtering import Loaded, candidates, loaded

__all__ = ["loaded"]  # the module's fixture: the real sessions of the served version


@pytest.fixture(scope="module")
def url(filtering_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose queue holds 400 images: filtered requests of at most 50 (8 candidates)."""
    registry = ModelRegistry(LocalStore(filtering_registry), MODEL)
    limits = {"max_queue_images": 400, "max_batch_size": 400, "max_balance_images": 400}
    app = create_app(
        settings(max_candidates=8, **limits), registry, cache_dir=tmp_path_factory.mktemp("c")
    )
    with serving(app) as base:
        yield base


def filter_counters(url: str, route: str) -> dict[str, float]:
    """dcgan_filter_* of ``route`` now: requests by outcome, and candidates."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.labels.get("route") != route or not sample.name.endswith("_total"):
                continue
            if sample.name == "dcgan_filter_requests_total":
                found[sample.labels["outcome"]] = sample.value
            elif sample.name == "dcgan_filter_candidates_total":
                found["candidates"] = sample.value
    return found


def test_failed_filtered_requests_are_counted(url: str, loaded: Loaded) -> None:
    def delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    met = candidates(loaded, Plan(1, labels_for_request(20, None)), 8)[1] >= 1.0  # rarely any
    drawn = int(np.where(met.any(axis=0), met.argmax(axis=0) + 1, 8).sum())

    before = filter_counters(url, "/generate")
    body = {"seed": 1, "batch_size": 20, "min_confidence": 1.0}
    none_pass = httpx.post(f"{url}/generate", json=body, timeout=60)
    assert none_pass.status_code == 422 and "within 8 candidates" in none_pass.text
    too_many = httpx.post(f"{url}/generate", json={**body, "batch_size": 51}, timeout=60)
    assert too_many.status_code == 413, too_many.text
    assert too_many.headers["x-max-filtered-images"] == "50"
    answered = httpx.post(f"{url}/generate", json={**body, "min_confidence": 0}, timeout=60)
    assert answered.status_code == 200
    after = filter_counters(url, "/generate")
    assert delta(before, after, "no_candidate") == 1
    assert delta(before, after, "refused") == 1
    assert delta(before, after, "answered") == 1
    assert delta(before, after, "candidates") == drawn + 20  # the failed one's too


def test_the_client_splits_a_filtered_balance_the_server_refuses(url: str, loaded: Loaded) -> None:
    """130 filtered images from a server that takes 50: three parts, the first with the seed
    itself (a prefix of the single answer), the others with their own seeds; same bytes twice."""
    counts, target, seed = {3: 10, 7: 0}, {3: 60, 7: 80}, 12345
    labels = np.repeat([3, 7], [50, 80])
    with DigitsClient(url) as client:
        got = client.balance(counts, target=target, seed=seed, min_confidence=0.0)
        again = client.balance(counts, target=target, seed=seed, min_confidence=0.0)
    assert got.labels.tolist() == labels.tolist() and got.seed == seed
    assert got.version == FILTERED and got.acceptance_rate == 1.0
    np.testing.assert_array_equal(got.images, again.images)
    # min_confidence 0 accepts candidate 0: each part is its seed's unfiltered images.
    for start in (0, 50, 100):
        part = Plan(part_seed(seed, start), labels[start : start + 50])
        expected = run_plan(loaded.generator, part, 64)
        np.testing.assert_array_equal(got.images[start : start + 50], expected)
    assert part_seed(seed, 0) == seed and len({part_seed(seed, s) for s in (0, 50, 100)}) == 3


def test_the_client_sends_a_filtered_balance_the_server_takes_whole(url: str) -> None:
    with DigitsClient(url) as client:
        got = client.balance({0: 0}, target={0: 50, 1: 0}, seed=3, min_confidence=0.0)
    whole = httpx.post(
        f"{url}/balance",
        json={"counts": {"0": 0}, "target": {"0": 50}, "seed": 3, "min_confidence": 0.0},
        timeout=60,
    )
    assert whole.status_code == 200
    with np.load(io.BytesIO(whole.content), allow_pickle=False) as npz:
        np.testing.assert_array_equal(got.images, npz["images"])
