"""Classifier-filtered answers: each image is its first candidate that the version's evaluation
classifier reads as the requested digit with at least the asked confidence.

Candidate k of image i comes from ``models.contract.candidate_latent(seed, k, ...)`` row i, and
candidate 0 is the unfiltered image, so a filtered answer is deterministic, a smaller request is a
prefix of a larger one, and ``min_confidence=0`` gives the unfiltered answer. Candidates per
image are capped (``DCGAN_SERVE_MAX_CANDIDATES``, or fewer if the request asks); an image that
finds none within the cap fails the request with a 422 that names the digits and the cap.

Bounded work: a request is admitted once, before any work, for its worst case (every image
drawing every candidate, ``worst_case``), or refused whole (413 if it could never fit, 503 while
the queue is full); each round runs only the images still waiting, rendered *and* scored by the
batcher's workers in slices of at most ``DCGAN_SERVE_BATCH_MAX_IMAGES``, and the candidates an
accepted image will never draw are handed back (``release``) as soon as it is accepted. So no
round can be refused after work was done, and no inference call grows with the request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from models.contract import candidate_latent
from serving.core.errors import InvalidRequest, TooLarge
from serving.core.generation import INLINE_MAX, MAX_FILTERED_IMAGES_HEADER, Classifier, Plan

__all__ = ["Classifier", "FilterStats", "NoCandidate", "Tally", "filtered_pixels", "worst_case"]

Render = Callable[[np.ndarray, np.ndarray], Awaitable[np.ndarray]]  # (z, labels) -> pixels
Judge = Callable[[np.ndarray, np.ndarray], Awaitable[np.ndarray]]  # (pixels, labels) -> conf


@dataclass(frozen=True)
class FilterStats:
    min_confidence: float
    candidates: int  # images generated and judged
    accepted: int  # images answered

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.candidates if self.candidates else 1.0

    def headers(self) -> dict[str, str]:
        return {
            "X-Filter-Min-Confidence": repr(self.min_confidence + 0.0),  # no "-0.0"
            "X-Filter-Candidates": str(self.candidates),
            "X-Filter-Acceptance-Rate": f"{self.acceptance_rate:.6f}",
        }


@dataclass
class Tally:
    """Candidates judged so far: what a request cost, counted even when it fails."""

    candidates: int = 0


class NoCandidate(InvalidRequest):
    """Some image found no accepted candidate within the cap."""


def worst_case(images: int, max_candidates: int, queue_limit: int) -> int:
    """Rows to admit for a filtered request: every image drawing every candidate. One that could
    never be queued is TooLarge, naming the most images a filtered request may ask for here."""
    rows = images * max_candidates
    if rows > queue_limit:
        most = queue_limit // max_candidates
        raise TooLarge(
            f"a filtered request for {images} images may draw up to {rows} candidates "
            f"({max_candidates} per image), more than this server ever queues ({queue_limit}): "
            f"ask for at most {most} images per filtered request (the Python client splits "
            "larger ones), or allow fewer candidates per image",
            headers={MAX_FILTERED_IMAGES_HEADER: str(most)},
        )
    return rows


async def filtered_pixels(
    plan: Plan,
    latent_dim: int,
    image_size: int,
    min_confidence: float,
    max_candidates: int,
    render: Render,
    judge: Judge,
    release: Callable[[int], None] = lambda rows: None,
    tally: Tally | None = None,
) -> tuple[np.ndarray, FilterStats]:
    """The plan's images, each its first candidate judged >= ``min_confidence`` for its digit.

    ``render`` and ``judge`` run admitted work; ``release(n)`` hands back n admitted candidates
    that will never be drawn; ``tally`` counts the candidates judged, failure or not.
    """
    tally = tally if tally is not None else Tally()
    n = plan.size
    pixels = np.empty((n, image_size, image_size), dtype=np.uint8)
    waiting = np.arange(n)
    for k in range(max_candidates):
        if not len(waiting):
            break
        # Rows up to the last waiting image (row i depends only on (seed, k, i)), built off the
        # event loop when there are many: 60,000 latents take tens of milliseconds.
        rows = int(waiting[-1]) + 1
        draw = functools.partial(candidate_latent, plan.seed, k, rows, latent_dim)
        z = (draw() if rows <= INLINE_MAX else await asyncio.to_thread(draw))[waiting]
        labels = plan.labels[waiting]
        candidates = await render(z, labels)
        del z
        confidence = await judge(candidates, labels)
        tally.candidates += len(waiting)
        accepted = confidence >= min_confidence
        pixels[waiting[accepted]] = candidates[accepted]
        release(int(accepted.sum()) * (max_candidates - k - 1))  # their later candidates
        waiting = waiting[~accepted]
    if len(waiting):
        digits = ", ".join(str(d) for d in sorted(set(plan.labels[waiting].tolist())))
        raise NoCandidate(
            f"{len(waiting)} of {n} images found no candidate that the classifier reads as their "
            f"digit ({digits}) with confidence >= {min_confidence} within {max_candidates} "
            "candidates each: lower min_confidence"
        )
    return pixels, FilterStats(min_confidence, tally.candidates, n)
