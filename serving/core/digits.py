"""The digit service: one request, from a validated plan to an answer, whatever the protocol.

Every entry point (REST ``/generate`` and ``/balance``, KServe V2 ``infer``, the TorchServe
handler, ``dcgan balance`` without a server) decodes its request into a :class:`Plan`, asks
:meth:`DigitService.answer`, and encodes the :class:`Answer`. Admission (the whole request, a
filtered one for its worst case, before any latent exists), the seed's latents, the classifier
filter and the filter's statistics live here once, so a rule or a fix holds on every path and
the same (version, plan) gives the same bytes on each of them (contracts 1 and 6).

Where the work runs is the :class:`Runner`'s job: the API's batcher (``serving/core/batching.py``,
shared queue and workers), or a :class:`ChunkedRunner` (TorchServe, offline balancing) that runs
it in place in slices of bounded size.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from serving.core.errors import (
    InvalidRequest,
    NotReady,
    RequestError,
    TooLarge,
    UnsupportedByVersion,
)
from serving.core.filtering import FilterStats, NoCandidate, Tally, filtered_pixels, worst_case
from serving.core.generation import INLINE_MAX, Backend, Classifier, Plan, render_chunked

T = TypeVar("T")
# A filtered request that ended without an answer: (outcome, candidates judged) for the metrics;
# outcomes "refused" (before any work), "no_candidate", "cancelled" (client gone), "failed".
FailureHook = Callable[[str, int], None]


class Version(Protocol):
    """What the core needs of a loaded model version (``serving.core.lifecycle.LoadedModel``)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def classifier(self) -> Classifier | None: ...


class Ticket(Protocol):
    """Admitted rows: ``settle(n)`` hands back n that will never be computed; ``release()`` the
    rest once the request ends."""

    def settle(self, rows: int) -> None: ...

    def release(self) -> None: ...


TicketT = TypeVar("TicketT", bound=Ticket)


class Runner(Protocol[TicketT]):
    """Where admitted work runs: ``run`` renders (z, labels) to uint8 pixels, ``score`` judges
    pixels with a classifier; ``admit`` refuses a request before any work (413/503)."""

    @property
    def max_queue_images(self) -> int: ...

    def admit(self, size: int) -> TicketT: ...

    async def run(
        self, ticket: TicketT, backend: Backend, z: np.ndarray, labels: np.ndarray
    ) -> np.ndarray: ...

    async def score(
        self, classifier: Classifier, pixels: np.ndarray, labels: np.ndarray
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Answer:
    """What every protocol encodes: the images, their labels and where they came from."""

    model: str
    version: str
    seed: int
    pixels: np.ndarray  # uint8 (N, H, W)
    labels: np.ndarray  # int64 (N,)
    filtered: FilterStats | None  # None: unfiltered

    @property
    def size(self) -> int:
        return len(self.labels)


class DigitService:
    """Answers plans on ``runner``; a filtered request draws at most ``max_candidates`` per image
    (the default and the ceiling a request may lower)."""

    def __init__(self, runner: Runner[Any], max_candidates: int) -> None:
        self.runner = runner
        self.max_candidates = max_candidates

    async def answer(
        self,
        version: Version,
        plan: Plan,
        min_confidence: float | None = None,
        *,
        max_candidates: int | None = None,
        on_failure: FailureHook | None = None,
    ) -> Answer:
        """The plan's images from ``version``, admitted whole (a filtered request for its worst
        case) or refused before any latent exists; filtered by the version's classifier when
        ``min_confidence`` is given. ``on_failure`` hears how a filtered request ended without
        an answer."""
        if min_confidence is None:
            pixels = await self._pixels(version.backend, plan)
            return self._answer(version, plan, pixels, None)
        try:
            classifier = self._classifier(version)
            limit = self._max_candidates(max_candidates)
            rows = worst_case(plan.size, limit, self.runner.max_queue_images)
            ticket = self.runner.admit(rows)
        except (RequestError, NotReady):
            if on_failure is not None:
                on_failure("refused", 0)
            raise
        backend, sig, tally = version.backend, version.backend.signature, Tally()

        async def render_rows(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
            return await self.runner.run(ticket, backend, z, labels)

        async def judge(pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
            return await self.runner.score(classifier, pixels, labels)

        try:
            pixels, stats = await filtered_pixels(
                plan,
                sig.latent_dim,
                sig.image_size,
                min_confidence,
                limit,
                render_rows,
                judge,
                release=ticket.settle,
                tally=tally,
            )
        except BaseException as exc:
            if on_failure is not None:
                on_failure(_failure_outcome(exc), tally.candidates)
            raise
        finally:
            ticket.release()
        return self._answer(version, plan, pixels, stats)

    async def pixels_for_latent(
        self, version: Version, z: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """Pixels for latents the caller gave (KServe V2's ``z``), admitted as any request."""
        ticket = self.runner.admit(len(labels))
        try:
            return await self.runner.run(ticket, version.backend, z.astype(np.float32), labels)
        finally:
            ticket.release()

    async def _pixels(self, backend: Backend, plan: Plan) -> np.ndarray:
        ticket = self.runner.admit(plan.size)
        try:
            sig = backend.signature
            small = plan.size <= INLINE_MAX
            z = plan.latent(sig) if small else await asyncio.to_thread(plan.latent, sig)
            return await self.runner.run(ticket, backend, z, plan.labels)
        finally:
            ticket.release()

    @staticmethod
    def _answer(
        version: Version, plan: Plan, pixels: np.ndarray, stats: FilterStats | None
    ) -> Answer:
        return Answer(version.name, version.version, plan.seed, pixels, plan.labels, stats)

    @staticmethod
    def _classifier(version: Version) -> Classifier:
        if version.classifier is None:
            raise UnsupportedByVersion(
                f"model version {version.version} was published without its evaluation "
                "classifier, so it cannot filter: omit min_confidence, or publish a version "
                "evaluated with `dcgan evaluate`"
            )
        return version.classifier

    def _max_candidates(self, asked: int | None) -> int:
        """The request's cap on candidates per image: at most the service's."""
        if asked is None:
            return self.max_candidates
        if not 1 <= asked <= self.max_candidates:
            raise InvalidRequest(
                f"max_candidates must be from 1 to {self.max_candidates} here, got {asked}"
            )
        return asked


def _failure_outcome(exc: BaseException) -> str:
    """How an admitted filtered request ended without an answer (a metrics label)."""
    if isinstance(exc, NoCandidate):
        return "no_candidate"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"  # the client hung up
    return "failed"


class _InPlaceTicket:
    """Nothing is queued in place: admitted rows need no accounting."""

    def settle(self, rows: int) -> None:
        pass

    def release(self) -> None:
        pass


class ChunkedRunner:
    """Runs work in place, in the caller's thread, at most ``chunk`` images per backend or
    classifier call (bounded activation memory); a request is refused past
    ``max_queue_images`` rows (default: no limit, for offline balancing)."""

    def __init__(self, chunk: int, max_queue_images: int = sys.maxsize) -> None:
        self.chunk = chunk
        self.max_queue_images = max_queue_images

    def admit(self, size: int) -> _InPlaceTicket:
        if size > self.max_queue_images:
            raise TooLarge(
                f"a request for {size} images is above the {self.max_queue_images} this "
                "server computes per request: ask for fewer"
            )
        return _InPlaceTicket()

    async def run(
        self, ticket: _InPlaceTicket, backend: Backend, z: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        return render_chunked(backend, z, labels, self.chunk)

    async def score(
        self, classifier: Classifier, pixels: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        confidence = np.empty(len(pixels), dtype=np.float32)
        for start in range(0, len(pixels), self.chunk):
            stop = start + self.chunk
            confidence[start:stop] = classifier.confidence(pixels[start:stop], labels[start:stop])
        return confidence


def run_now(work: Coroutine[Any, Any, T]) -> T:
    """``work`` to completion from synchronous code (TorchServe's worker, the CLI): with a
    :class:`ChunkedRunner` nothing in it waits on anything but the computation itself."""
    return asyncio.run(work)
