"""Dynamic batching: concurrent requests for one model share one inference call.

All inference runs on one worker thread, so requests never fight over the cores (ONNX Runtime
already uses all of them for one call). While that thread is busy, new requests queue; when it
frees up, everything queued for the same model (up to ``max_images``) goes in one call, optionally
after waiting ``wait_s`` for company. Rows are independent in the generator, so a request gets the
same bytes batched or alone (tested).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from serving.errors import NotReady
from serving.generation import Backend, render

log = logging.getLogger("serving.batching")


@dataclass
class _Item:
    backend: Backend
    z: np.ndarray
    labels: np.ndarray
    future: asyncio.Future[np.ndarray] = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.labels)


class Batcher:
    """``await run(backend, z, labels)`` -> uint8 pixels, batched with its neighbours in time."""

    def __init__(
        self,
        *,
        max_images: int,
        wait_s: float = 0.0,
        max_queue_images: int = 65_536,
        enabled: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.max_images = max_images
        self.wait_s = wait_s
        self.max_queue_images = max_queue_images
        self.enabled = enabled
        self.on_batch = on_batch  # (images, requests) of each inference call, for metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._queue: deque[_Item] = deque()
        self._queued_images = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_images(self) -> int:
        return self._queued_images

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(NotReady("the server is shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=True)

    async def run(self, backend: Backend, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await loop.run_in_executor(self._executor, _infer, backend, z, labels)
        if self._queued_images + len(labels) > self.max_queue_images and self._queue:
            raise NotReady(f"server busy: {self._queued_images} images queued; retry in a moment")
        item = _Item(backend, z, labels, loop.create_future())
        self._queue.append(item)
        self._queued_images += item.size
        assert self._wakeup is not None, "Batcher.start() was not awaited"
        self._wakeup.set()
        return await item.future

    async def _loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.wait_s > 0 and self._queue[0].size < self.max_images:
                await self._gather_for(self.wait_s)
            batch = self._take()
            try:
                pixels = await loop.run_in_executor(
                    self._executor, _infer_many, batch[0].backend, batch
                )
            except Exception as exc:  # a backend failure fails the batch, not the server
                log.exception("serving.batch_failed requests=%d", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(sum(item.size for item in batch), len(batch))
            for item, result in zip(batch, pixels, strict=True):
                if not item.future.done():  # the client may have gone away
                    item.future.set_result(result)

    async def _gather_for(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the queue to fill a batch."""
        assert self._wakeup is not None
        deadline = asyncio.get_running_loop().time() + seconds
        while sum(item.size for item in self._queue) < self.max_images:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Item]:
        """The head of the queue plus whatever follows it for the same backend, up to the cap."""
        first = self._queue.popleft()
        batch, total = [first], first.size
        while self._queue:
            nxt = self._queue[0]
            if nxt.backend is not first.backend or total + nxt.size > self.max_images:
                break
            batch.append(self._queue.popleft())
            total += nxt.size
        self._queued_images -= total
        return batch


def _infer(backend: Backend, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return render(backend.run(z, labels))


def _infer_many(backend: Backend, batch: list[_Item]) -> list[np.ndarray]:
    if len(batch) == 1:
        return [_infer(backend, batch[0].z, batch[0].labels)]
    pixels = _infer(
        backend,
        np.concatenate([item.z for item in batch]),
        np.concatenate([item.labels for item in batch]),
    )
    bounds = np.cumsum([item.size for item in batch])[:-1]
    return np.split(pixels, bounds)
