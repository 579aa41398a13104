"""The batcher on a real ONNX generator: admission whole or not at all, round-robin between
requests, cancelled work dropped, Retry-After from the measured throughput."""

from __future__ import annotations

import asyncio
import math
import platform
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from models.contract import GeneratorSignature, labels_for_request, latent_for_seed
from models.registry import ModelRegistry
from serving.core.batching import Batcher, fix_mmap_threshold
from serving.core.errors import NotReady, RequestError
from serving.core.generation import render
from serving.core.onnx_backend import OnnxBackend
from serving.http_status import http_status

T = TypeVar("T")


@pytest.fixture(scope="module")
def backend(published_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> OnnxBackend:
    from models.registry import LocalStore
    from tests.serving.conftest import MODEL

    registry = ModelRegistry(LocalStore(published_registry), MODEL)
    sig = GeneratorSignature.from_dict(registry.show("v1").signature)
    path = registry.pull("v1", tmp_path_factory.mktemp("batching")) / "generator.onnx"
    return OnnxBackend(path, sig, device="cpu", threads=1)


def run(factory: Callable[[Batcher], Coroutine[Any, Any, T]], **options: Any) -> T:
    async def main() -> T:
        batcher = Batcher(**{"workers": 1, "max_images": 16, **options})
        await batcher.start()
        try:
            return await factory(batcher)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def inputs(backend: OnnxBackend, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return latent_for_seed(seed, n, backend.signature.latent_dim), labels_for_request(n, None)


def test_requests_share_batches_round_robin_and_get_their_own_rows(backend: OnnxBackend) -> None:
    batches: list[tuple[int, int]] = []

    async def scenario(batcher: Batcher) -> tuple[list[int], list[np.ndarray]]:
        finished: list[int] = []

        async def request(i: int, n: int) -> np.ndarray:
            z, labels = inputs(backend, i, n)
            out = await batcher.run(batcher.admit(n), backend, z, labels)
            finished.append(i)
            return out

        large = asyncio.create_task(request(0, 2000))
        await asyncio.sleep(0)  # queued first
        small = [asyncio.create_task(request(i, 1 + i)) for i in range(1, 4)]
        results = await asyncio.gather(large, *small)
        return finished, list(results)

    finished, results = run(scenario, on_batch=lambda n, r: batches.append((n, r)))
    assert finished[-1] == 0, f"the large request finished before the small ones: {finished}"
    assert any(requests > 1 for _, requests in batches[:3]), batches[:3]  # shared early
    assert all(images <= 16 for images, _ in batches)
    for i, n in enumerate((2000, 2, 3, 4)):
        z, labels = inputs(backend, i, n)
        np.testing.assert_array_equal(results[i], render(backend.run(z, labels)))


def test_admission_is_whole_with_a_retry_after_from_the_measured_rate(
    backend: OnnxBackend,
) -> None:
    async def scenario(batcher: Batcher) -> tuple[int, float, int]:
        z, labels = inputs(backend, 1, 200)
        await batcher.run(batcher.admit(200), backend, z, labels)  # measures the rate
        rate = batcher.images_per_s
        assert rate is not None and rate > 0
        first = batcher.admit(900)  # 900 of 1000 reserved, none computed yet
        with pytest.raises(NotReady) as refused:
            batcher.admit(500)
        assert batcher.backlog == 900  # the refused request reserved nothing
        first.release()
        assert batcher.backlog == 0
        return refused.value.retry_after_s, rate, 400

    retry, rate, excess = run(scenario, max_queue_images=1000)
    assert retry == max(1, math.ceil(excess / rate))

    async def never_fits(batcher: Batcher) -> None:
        with pytest.raises(RequestError) as too_big:
            batcher.admit(1001)
        assert http_status(too_big.value) == 413

    run(never_fits, max_queue_images=1000)


def test_a_cancelled_request_leaves_the_queue(backend: OnnxBackend) -> None:
    async def scenario(batcher: Batcher) -> tuple[int, int]:
        computed: list[int] = []
        batcher.on_batch = lambda n, _: computed.append(n)
        z, labels = inputs(backend, 3, 5000)
        task = asyncio.create_task(batcher.run(batcher.admit(5000), backend, z, labels))
        while not computed:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)  # in-flight batches finish; nothing new is formed
        done = sum(computed)
        await asyncio.sleep(0.2)
        assert sum(computed) == done
        return batcher.backlog, done

    backlog, done = run(scenario)
    assert backlog == 0 and done < 5000


def test_a_ticket_outlives_its_runs_until_released(backend: OnnxBackend) -> None:
    """One admission can cover several runs (a filtered request's rounds): a run settles the
    rows it computed, never the rest of the ticket; ``settle`` and ``release`` return the rest."""

    async def scenario(batcher: Batcher) -> list[int]:
        seen = []
        ticket = batcher.admit(100)
        for n in (40, 25):
            z, labels = inputs(backend, n, n)
            await batcher.run(ticket, backend, z, labels)
            seen.append(batcher.backlog)
        ticket.settle(10)  # known to be unneeded
        seen.append(batcher.backlog)
        ticket.release()
        seen.append(batcher.backlog)
        return seen

    assert run(scenario, max_queue_images=1000) == [60, 35, 25, 0]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_the_mmap_threshold_is_fixed_where_glibc_allows() -> None:
    """Large answers' buffers stay out of glibc's heaps (measured in benchmarks/balance_memory)."""
    assert fix_mmap_threshold()
