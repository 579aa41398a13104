"""Dynamic batching: concurrent requests for one model share inference calls, and one large
request spreads over every inference worker.

Inference runs on a fixed pool of worker threads (one per core on CPU, see
serving.engine.inference_pool), so requests never oversubscribe the cores. The unit of work is a
*slice* of a request's rows: while the workers are busy, requests queue; each new batch takes rows
from the head of the queue, across requests for the same model, up to ``max_images`` and up to an
even share of what is queued per worker, so a lone batch-1024 request keeps every core busy and 32
batch-1 requests become a couple of batches of 16. One batch more than there are workers is in
flight (formed and waiting), so a worker never idles while the event loop hands out results.
Rows are independent in the generator, so a request gets the same bytes however it is sliced or
merged (tested).
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


@dataclass(eq=False)
class _Item:
    """One request: its rows are handed out in slices; its answer is complete when all are back."""

    backend: Backend
    z: np.ndarray
    labels: np.ndarray
    future: asyncio.Future[np.ndarray] = field(repr=False)
    taken: int = 0  # rows handed to batches so far
    done: int = 0  # rows computed so far
    out: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class _Slice:
    item: _Item
    start: int
    stop: int


class Batcher:
    """``await run(backend, z, labels)`` -> uint8 pixels, batched with its neighbours in time."""

    def __init__(
        self,
        *,
        workers: int = 1,
        max_images: int,
        wait_s: float = 0.0,
        max_queue_images: int = 65_536,
        enabled: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.workers = workers
        self.max_images = max_images
        self.wait_s = wait_s
        self.max_queue_images = max_queue_images
        self.enabled = enabled
        self.on_batch = on_batch  # (images, requests) of each inference call, for metrics
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._queue: deque[_Item] = deque()
        self._queued_images = 0  # rows not yet handed to a batch
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers + 1)  # each worker busy, one batch waiting
        self._task = asyncio.create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._running, return_exceptions=True)
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
        assert self._wakeup is not None and self._slots is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()  # form the batch as late as possible: it grows meanwhile
            if self.wait_s > 0 and self._queued_images < self.max_images:
                await self._gather_for(self.wait_s)
            task = asyncio.create_task(self._execute(self._take()))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _gather_for(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the queue to fill a batch."""
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._queued_images < self.max_images:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Slice]:
        """Rows from the head of the queue for one backend: up to the cap, and up to an even
        share of what is queued per worker (so the other workers get rows too)."""
        share = -(-self._queued_images // self.workers)
        limit = max(1, min(self.max_images, share))
        backend = self._queue[0].backend
        batch: list[_Slice] = []
        total = 0
        while self._queue and total < limit and self._queue[0].backend is backend:
            item = self._queue[0]
            count = min(item.size - item.taken, limit - total)
            batch.append(_Slice(item, item.taken, item.taken + count))
            item.taken += count
            total += count
            if item.taken == item.size:
                self._queue.popleft()
        self._queued_images -= total
        return batch

    async def _execute(self, batch: list[_Slice]) -> None:
        assert self._slots is not None
        loop = asyncio.get_running_loop()
        try:
            pixels = await loop.run_in_executor(self._executor, _infer_slices, batch)
        except Exception as exc:  # a backend failure fails these requests, not the server
            log.exception("serving.batch_failed requests=%d", len(batch))
            for part in batch:
                if not part.item.future.done():
                    part.item.future.set_exception(exc)
            return
        finally:
            self._slots.release()
        if self.on_batch is not None:
            self.on_batch(sum(p.stop - p.start for p in batch), len(batch))
        offset = 0
        for part in batch:
            item, rows = part.item, part.stop - part.start
            if item.out is None:
                item.out = np.empty((item.size, *pixels.shape[1:]), dtype=pixels.dtype)
            item.out[part.start : part.stop] = pixels[offset : offset + rows]
            offset += rows
            item.done += rows
            if item.done == item.size and not item.future.done():  # the client may be gone
                item.future.set_result(item.out)


def _infer(backend: Backend, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return render(backend.run(z, labels))


def _infer_slices(batch: list[_Slice]) -> np.ndarray:
    backend = batch[0].item.backend
    if len(batch) == 1:
        part = batch[0]
        return _infer(
            backend, part.item.z[part.start : part.stop], part.item.labels[part.start : part.stop]
        )
    z = np.concatenate([p.item.z[p.start : p.stop] for p in batch])
    labels = np.concatenate([p.item.labels[p.start : p.stop] for p in batch])
    return _infer(backend, z, labels)
