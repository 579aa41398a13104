"""What a request handler needs, built once per app, and the steps every image route shares:
reading a JSON body within its limits, and waiting for pixels unless the client hangs up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import numpy as np
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from serving.batching import Batcher
from serving.errors import ClientGone, NotReady, RequestError
from serving.filtering import FilterStats, NoCandidate, Tally, filtered_pixels, worst_case
from serving.generation import INLINE_MAX, Classifier, Plan
from serving.lifecycle import LoadedModel
from serving.metrics import ServiceMetrics
from serving.model_set import ModelSet
from serving.schemas import BalanceRequest, GenerateRequest, Limits, parse_body
from serving.settings import ServeSettings

T = TypeVar("T")
M = TypeVar("M", GenerateRequest, BalanceRequest)


class ServiceState:
    """Everything a request handler needs, built once per app (``app.state.service``)."""

    def __init__(
        self,
        settings: ServeSettings,
        models: ModelSet,
        batcher: Batcher,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings = settings
        self.limits: Limits = settings.limits()
        self.models = models
        self.batcher = batcher
        self.metrics = metrics
        self.draining = False  # set on SIGTERM (serving/server.py): /readyz turns 503

    async def pixels_for_latent(
        self, model: LoadedModel, z: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """Pixels for latents the client gave (KServe V2's ``z``), through the same batcher."""
        ticket = self.batcher.admit(len(labels))
        try:
            return await self.batcher.run(ticket, model.backend, z.astype(np.float32), labels)
        finally:
            ticket.release()

    async def pixels(
        self,
        model: LoadedModel,
        plan: Plan,
        min_confidence: float | None = None,
        *,
        max_candidates: int | None = None,
        route: str = "other",
    ) -> tuple[np.ndarray, FilterStats | None]:
        """The plan's pixels through the batcher, admitted whole (a filtered request for its
        worst case) or refused before any latent exists; filtered by the version's classifier
        when ``min_confidence`` is given, with at most ``max_candidates`` per image (default and
        ceiling: the server's). ``route`` labels the counters of a filtered request that fails;
        an answered one is counted by its route with the answer (``observe_images``)."""
        sig = model.signature
        if min_confidence is None:
            ticket = self.batcher.admit(plan.size)
            try:
                small = plan.size <= INLINE_MAX
                z = plan.latent(sig) if small else await run_in_threadpool(plan.latent, sig)
                return await self.batcher.run(ticket, model.backend, z, plan.labels), None
            finally:
                ticket.release()
        try:
            classifier = self._classifier(model)
            limit = self._max_candidates(max_candidates)
            rows = worst_case(plan.size, limit, self.batcher.max_queue_images)
            ticket = self.batcher.admit(rows)
        except (RequestError, NotReady):
            self.metrics.observe_filter_failure(route, model.name, "refused", 0)
            raise

        async def render(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
            return await self.batcher.run(ticket, model.backend, z, labels)

        async def judge(pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
            return await self.batcher.score(classifier, pixels, labels)

        tally = Tally()
        try:
            return await filtered_pixels(
                plan,
                sig.latent_dim,
                sig.image_size,
                min_confidence,
                limit,
                render,
                judge,
                release=ticket.settle,
                tally=tally,
            )
        except BaseException as exc:
            outcome = _failure_outcome(exc)
            self.metrics.observe_filter_failure(route, model.name, outcome, tally.candidates)
            raise
        finally:
            ticket.release()

    def _classifier(self, model: LoadedModel) -> Classifier:
        if model.classifier is None:
            raise RequestError(
                f"model version {model.version} was published without its evaluation "
                "classifier, so it cannot filter: omit min_confidence, or publish a version "
                "evaluated with `dcgan evaluate`",
                409,
            )
        return model.classifier

    def _max_candidates(self, asked: int | None) -> int:
        """The request's cap on candidates per image: at most the server's."""
        limit = self.settings.max_candidates
        if asked is None:
            return limit
        if not 1 <= asked <= limit:
            raise RequestError(f"max_candidates must be from 1 to {limit} here, got {asked}")
        return asked


def _failure_outcome(exc: BaseException) -> str:
    """How a filtered request that was admitted ended without an answer (a metrics label)."""
    if isinstance(exc, NoCandidate):
        return "no_candidate"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"  # the client hung up
    return "failed"


def service_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(service_state)]


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled as soon as the client hangs up (its rows leave the queue)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone
    return task.result()


async def _disconnected(request: Request) -> None:
    """Returns when the ASGI server reports the client's disconnect (the body is read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def json_body(request: Request, model: type[M], state: ServiceState) -> M:
    """The request's body, read within the limits and validated as ``model``."""
    body = await read_body(request, state)
    return parse_body(model, body, request.headers.get("content-type"), state.limits)


async def read_body(request: Request, state: ServiceState) -> bytes:
    """The raw body, within the service's size and time limits."""
    return await _read_body(request, state.limits.max_body_bytes, state.settings.body_timeout_s)


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (before reading it all if it says so)
    and with 408 when it takes longer than ``timeout_s`` (a client trickling it holds a
    connection); a client that hangs up while sending it is ClientGone (no 5xx, no traceback)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body of {declared} bytes is above the limit of {limit}", 413)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise RequestError(f"request body is above the limit of {limit} bytes", 413)
    except ClientDisconnect:
        raise ClientGone from None
    except TimeoutError:
        raise RequestError(f"request body not received within {timeout_s:g} s", 408) from None
    return bytes(body)
