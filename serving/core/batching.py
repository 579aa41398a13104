"""Dynamic batching with admission control and fair sharing between requests.

Inference runs on a fixed pool of worker threads (one per core on CPU, see
serving.core.onnx_backend.inference_pool), so requests never oversubscribe the cores. A request is
*admitted* whole or refused whole before its latents are built (``admit``): the backlog (rows
admitted and not yet computed) never passes ``max_queue_images``, and a refusal names a
``Retry-After`` computed from the backlog and the measured throughput. A request that could never
fit is a 4xx, not an endless 503. A filtered request is admitted once for its worst case (every
candidate it may draw) and its candidates are scored here too (``score``), in the same slices
and on the same workers as the generator: no inference call ever holds more than ``max_images``
rows, whoever asked for them.

The unit of work is a *slice* of a request's rows. Batches are formed only when a worker is free
(the freshest decision), round-robin by request: the request at the head of the queue gives up to
``max_images`` rows (and up to an even share of what is queued per worker, so a lone large request
keeps every core busy), then goes to the back if it has rows left; with batching on, the later
requests that fit whole in the room left join the same call (32 batch-1 requests become one or
two batches). So a batch-1 request that arrives while a 60,000-image /balance runs waits for the
next free worker and runs in a batch of its own size, not behind all of the /balance (measured in
benchmarks/serve_fairness.py). With batching off a batch holds one request's rows; admission and
the rotation are the same. A request whose client hung up is cancelled: its unsent rows leave
the queue. Rows are independent in the generator, so a request gets the same bytes however it is
sliced or merged (tested).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from serving.core.errors import NotReady, TooLarge
from serving.core.generation import Backend, Classifier, render

Compute = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (rows, labels) -> output rows

log = logging.getLogger("serving.core.batching")

RETRY_AFTER_MAX_S = 300
THROUGHPUT_SMOOTHING = 0.2  # weight of the newest batch in the images/s estimate
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, kept fixed


def fix_mmap_threshold() -> bool:
    """Keep glibc from parking large buffers in its heaps for good; False where it cannot.

    glibc raises its mmap threshold (up to 32 MB) each time it frees a large block, after which
    an answer's buffers (latents, pixels, the .npz) come from per-thread heaps that it seldom
    returns: measured with benchmarks/balance_memory.py, the server's resident memory after a
    60,000-image /balance went from 317 MiB after the first to 456 MiB after the second and
    third; with the threshold fixed (what ``MALLOC_MMAP_THRESHOLD_`` does, which wins if set),
    315, 319, 319. A no-op off glibc (``mallopt`` missing or refusing).
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return True  # the operator's choice; glibc read it at start
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


class Ticket:
    """Rows reserved in the backlog for one admitted request: computed rows settle as their
    batches finish, ``settle(n)`` returns n rows known to be unneeded, ``release`` the rest."""

    def __init__(self, batcher: Batcher, size: int) -> None:
        self._batcher = batcher
        self.size = size
        self.outstanding = size  # admitted rows not yet computed (or dropped)

    def settle(self, rows: int) -> None:
        rows = min(rows, self.outstanding)
        self.outstanding -= rows
        self._batcher._backlog -= rows

    def release(self) -> None:
        self.settle(self.outstanding)


@dataclass(eq=False)
class _Item:
    """One request: its rows are handed out in slices; its answer is complete when all are back.

    ``model`` is what batches merge on (the same generator, or the same classifier); ``compute``
    runs it on rows; ``ticket`` is settled as the rows are computed (None: classifier rows, whose
    candidates were admitted and settled as generator rows)."""

    model: object
    compute: Compute
    rows: np.ndarray
    labels: np.ndarray
    ticket: Ticket | None
    future: asyncio.Future[np.ndarray] = field(repr=False)
    taken: int = 0  # rows handed to batches so far
    done: int = 0  # rows computed so far
    settled: int = 0  # rows returned to the ticket so far
    out: np.ndarray | None = field(default=None, repr=False)

    @property
    def generates(self) -> bool:
        return self.ticket is not None

    def settle(self, rows: int) -> None:
        """Return up to ``rows`` of this item's rows to its ticket, never one twice."""
        rows = min(rows, self.size - self.settled)
        self.settled += rows
        if self.ticket is not None:
            self.ticket.settle(rows)

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def left(self) -> int:
        return self.size - self.taken


@dataclass(frozen=True)
class _Slice:
    item: _Item
    start: int
    stop: int


class Batcher:
    """``ticket = admit(n)``, then ``await run(ticket, backend, z, labels)`` -> uint8 pixels;
    ``await score(classifier, pixels, labels)`` -> each image's confidence, on the same pool."""

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
        self._queued_images = 0  # rows queued, not yet handed to a batch
        self._backlog = 0  # rows admitted and not yet computed (reserved, queued or running)
        self._images_per_s: float | None = None  # measured over every worker
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def backlog(self) -> int:
        return self._backlog

    @property
    def images_per_s(self) -> float | None:
        """Measured throughput over every worker (None before the first batch)."""
        return self._images_per_s

    async def start(self) -> None:
        fix_mmap_threshold()  # answers are freed and reallocated every request: keep RSS flat
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers)  # a batch is formed when a worker is free
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

    def admit(self, size: int) -> Ticket:
        """Reserve ``size`` rows, or refuse the whole request now (before any work is done)."""
        if size > self.max_queue_images:
            raise TooLarge(
                f"{size} images can never be queued here (the queue holds "
                f"{self.max_queue_images}): ask for fewer per request"
            )
        if self._backlog and self._backlog + size > self.max_queue_images:
            retry = self.retry_after_s(self._backlog + size - self.max_queue_images)
            raise NotReady(
                f"server busy: {self._backlog} images queued, room for "
                f"{self.max_queue_images - self._backlog}; retry in {retry} s",
                retry_after_s=retry,
            )
        self._backlog += size
        return Ticket(self, size)

    def retry_after_s(self, images: int) -> int:
        """Seconds until ``images`` more rows of the backlog are computed, at the measured rate."""
        rate = self.images_per_s
        if not rate:
            return 1
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(images / rate)))

    async def run(
        self, ticket: Ticket, backend: Backend, z: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """The request's pixels; cancelling this (a client that hung up) drops its unsent rows.
        Its rows are settled on ``ticket`` (computed, or dropped); the rest of the ticket is the
        caller's to release, so one ticket can cover a filtered request's every round."""
        if not len(labels):
            size = backend.signature.image_size
            return np.empty((0, size, size), dtype=np.uint8)
        return await self._submit(backend, functools.partial(_infer, backend), z, labels, ticket)

    async def score(
        self, classifier: Classifier, pixels: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """Each image's confidence (float32 [N]) from ``classifier``, in slices of at most
        ``max_images`` on the inference workers; no admission of its own (see the module)."""
        if not len(labels):
            return np.empty(0, dtype=np.float32)
        return await self._submit(classifier, classifier.confidence, pixels, labels, None)

    async def _submit(
        self,
        model: object,
        compute: Compute,
        rows: np.ndarray,
        labels: np.ndarray,
        ticket: Ticket | None,
    ) -> np.ndarray:
        assert self._wakeup is not None, "Batcher.start() was not awaited"
        item = _Item(
            model, compute, rows, labels, ticket, asyncio.get_running_loop().create_future()
        )
        self._queue.append(item)
        self._queued_images += item.size
        self._wakeup.set()
        try:
            return await item.future
        except asyncio.CancelledError:
            self._drop(item)
            raise
        finally:
            item.settle(item.size)  # what was dropped or failed returns to the backlog

    def _drop(self, item: _Item) -> None:
        if item in self._queue:
            self._queue.remove(item)
            self._queued_images -= item.left
            item.taken = item.size
        if not item.future.done():
            item.future.cancel()

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
            batch = self._take()
            if not batch:  # every queued request was cancelled meanwhile
                self._slots.release()
                continue
            task = asyncio.create_task(self._execute(batch))
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
        """One batch, round-robin by request: rows of the request at the head of the queue (up
        to the cap, and up to an even share of what is queued per worker); then, with batching
        on, every later request of the same backend that fits whole in the room left. A request
        with rows left goes to the back, so a batch-1 request queued behind a 60,000-image
        /balance gets the next free worker, in a batch of its own size, not behind all of it."""
        if not self._queue:
            return []
        share = -(-self._queued_images // self.workers)
        room = max(1, min(self.max_images, share))
        head = self._queue.popleft()
        count = min(head.left, room)
        batch = [_Slice(head, head.taken, head.taken + count)]
        head.taken += count
        room -= count
        if self.enabled:
            for item in list(self._queue):
                if not room:
                    break
                if item.model is head.model and item.left <= room:
                    batch.append(_Slice(item, item.taken, item.size))
                    room -= item.left
                    item.taken = item.size
                    self._queue.remove(item)
        if head.left:
            self._queue.append(head)
        self._queued_images -= sum(part.stop - part.start for part in batch)
        return batch

    async def _execute(self, batch: list[_Slice]) -> None:
        assert self._slots is not None
        loop = asyncio.get_running_loop()
        rows_total = sum(p.stop - p.start for p in batch)
        started = time.perf_counter()
        try:
            out = await loop.run_in_executor(self._executor, _compute_slices, batch)
        except Exception as exc:  # a backend failure fails these requests, not the server
            log.exception("serving.batch_failed requests=%d", len(batch))
            for part in batch:
                part.item.settle(part.stop - part.start)
                if not part.item.future.done():
                    part.item.future.set_exception(exc)
            return
        finally:
            self._slots.release()
        if batch[0].item.generates:  # the rate and the batch metrics count generator rows
            self._observe_rate(rows_total, time.perf_counter() - started)
            if self.on_batch is not None:
                self.on_batch(rows_total, len(batch))
        offset = 0
        for part in batch:
            item, rows = part.item, part.stop - part.start
            item.settle(rows)
            if not item.future.done():  # the client may be gone
                if item.out is None:
                    item.out = np.empty((item.size, *out.shape[1:]), dtype=out.dtype)
                item.out[part.start : part.stop] = out[offset : offset + rows]
                item.done += rows
                if item.done == item.size:
                    item.future.set_result(item.out)
            offset += rows

    def _observe_rate(self, rows: int, seconds: float) -> None:
        rate = self.workers * rows / max(seconds, 1e-6)
        old = self._images_per_s
        self._images_per_s = rate if old is None else old + THROUGHPUT_SMOOTHING * (rate - old)


def _infer(backend: Backend, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return render(backend.run(z, labels))


def _compute_slices(batch: list[_Slice]) -> np.ndarray:
    compute = batch[0].item.compute
    if len(batch) == 1:
        part = batch[0]
        return compute(
            part.item.rows[part.start : part.stop], part.item.labels[part.start : part.stop]
        )
    rows = np.concatenate([p.item.rows[p.start : p.stop] for p in batch])
    labels = np.concatenate([p.item.labels[p.start : p.stop] for p in batch])
    return compute(rows, labels)
