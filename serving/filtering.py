"""Classifier-filtered answers: each image is its first candidate that the version's evaluation
classifier reads as the requested digit with at least the asked confidence.

Candidate k of image i comes from ``models.contract.candidate_latent(seed, k, ...)`` row i, and
candidate 0 is the unfiltered image, so a filtered answer is deterministic, a smaller request is a
prefix of a larger one, and ``min_confidence=0`` gives the unfiltered answer. Candidates per
image are capped (``DCGAN_SERVE_MAX_CANDIDATES``); an image that finds none within the cap fails
the request with a 422 that names the digits and the cap. Each round runs only the images still
waiting, through the same batcher as every other request.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from starlette.concurrency import run_in_threadpool

from models.contract import candidate_latent
from serving.errors import RequestError
from serving.generation import INLINE_MAX, Plan

Render = Callable[[np.ndarray, np.ndarray], Awaitable[np.ndarray]]  # (z, labels) -> pixels
Judge = Callable[[np.ndarray, np.ndarray], Awaitable[np.ndarray]]  # (pixels, labels) -> conf


class Classifier(Protocol):
    """A version's evaluation classifier; ``confidence``: the probability of each image's label."""

    def confidence(self, pixels: np.ndarray, labels: np.ndarray) -> np.ndarray: ...


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


async def filtered_pixels(
    plan: Plan,
    latent_dim: int,
    image_size: int,
    min_confidence: float,
    max_candidates: int,
    render: Render,
    judge: Judge,
) -> tuple[np.ndarray, FilterStats]:
    """The plan's images, each its first candidate judged >= ``min_confidence`` for its digit."""
    n = plan.size
    pixels = np.empty((n, image_size, image_size), dtype=np.uint8)
    waiting = np.arange(n)
    drawn = 0
    for k in range(max_candidates):
        if not len(waiting):
            break
        # Rows up to the last waiting image (row i depends only on (seed, k, i)), built off the
        # event loop when there are many: 60,000 latents take tens of milliseconds.
        rows = int(waiting[-1]) + 1
        draw = functools.partial(candidate_latent, plan.seed, k, rows, latent_dim)
        z = (draw() if rows <= INLINE_MAX else await run_in_threadpool(draw))[waiting]
        labels = plan.labels[waiting]
        candidates = await render(z, labels)
        confidence = await judge(candidates, labels)
        drawn += len(waiting)
        accepted = confidence >= min_confidence
        pixels[waiting[accepted]] = candidates[accepted]
        waiting = waiting[~accepted]
    if len(waiting):
        digits = ", ".join(str(d) for d in sorted(set(plan.labels[waiting].tolist())))
        raise RequestError(
            f"{len(waiting)} of {n} images found no candidate that the classifier reads as their "
            f"digit ({digits}) with confidence >= {min_confidence} within {max_candidates} "
            "candidates each: lower min_confidence",
            422,
        )
    return pixels, FilterStats(min_confidence, drawn, n)
