"""From a validated request to pixels, for any backend: the seed contract lives here.

A backend only maps ``(z, labels)`` to generator output; everything that decides *which* images a
request gets (the seed's latent, the labels, chunking, the pixel conversion) is this module's, so
the ONNX Runtime service and the TorchServe handler give the same images for the same request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.contract import (
    MAX_SEED,
    NUM_CLASSES,
    GeneratorSignature,
    labels_for_request,
    latent_for_seed,
    to_uint8,
)
from serving.core.errors import InvalidRequest
from serving.core.schemas import BalanceRequest, GenerateRequest

INLINE_MAX = 64  # bigger requests build latents and encode answers off the event loop
# On a 413 for a filtered request: the most images one may ask for here (the client splits by
# it). Here, not in serving/core/filtering.py, so the client reads it without the server's packages.
MAX_FILTERED_IMAGES_HEADER = "X-Max-Filtered-Images"


class Backend(Protocol):
    """A loaded generator: ``run`` maps z float32[N, latent] (+ labels int64[N]) to
    float32[N, C, H, W] in [-1, 1]. Row i of the output depends only on row i of the input."""

    @property
    def signature(self) -> GeneratorSignature: ...

    def run(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray: ...


class Classifier(Protocol):
    """A version's evaluation classifier, for filtered answers: ``confidence`` is the
    probability of each image's own label, float32[N]; row i depends only on image i."""

    def confidence(self, pixels: np.ndarray, labels: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Plan:
    """The inputs one request resolves to (seed drawn here when the client gave none)."""

    seed: int
    labels: np.ndarray  # int64[N]

    @property
    def size(self) -> int:
        return len(self.labels)

    def latent(self, sig: GeneratorSignature) -> np.ndarray:
        return latent_for_seed(self.seed, self.size, sig.latent_dim)


def resolve_seed(seed: int | None) -> int:
    return secrets.randbelow(MAX_SEED + 1) if seed is None else seed


def plan_generate(request: GenerateRequest, sig: GeneratorSignature) -> Plan:
    if request.digits is not None and not sig.conditional:
        raise InvalidRequest(
            "the loaded model is unconditional: it cannot be asked for digits; omit 'digits'"
        )
    labels = labels_for_request(request.batch_size, request.digits)
    return Plan(resolve_seed(request.seed), labels)


def plan_balance(request: BalanceRequest, sig: GeneratorSignature) -> Plan:
    """Labels sorted by class: ``deficit[k]`` images of digit k, for k = 0..9."""
    if not sig.conditional:
        raise InvalidRequest(
            "the loaded model is unconditional: /balance needs a conditional model"
        )
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), request.deficits())
    return Plan(resolve_seed(request.seed), labels)


def render(output: np.ndarray) -> np.ndarray:
    """Generator output (N, 1, H, W) in [-1, 1] -> uint8 pixels (N, H, W) (contract 2)."""
    return to_uint8(output)[:, 0]


def render_chunked(backend: Backend, z: np.ndarray, labels: np.ndarray, chunk: int) -> np.ndarray:
    """uint8 pixels for latents, at most ``chunk`` images per backend call (bounded memory)."""
    sig = backend.signature
    pixels = np.empty((len(z), sig.image_size, sig.image_size), dtype=np.uint8)
    for start in range(0, len(z), chunk):
        stop = start + chunk
        pixels[start:stop] = render(backend.run(z[start:stop], labels[start:stop]))
    return pixels


def run_plan(backend: Backend, plan: Plan, chunk: int) -> np.ndarray:
    """Pixels for a plan, unfiltered, in the caller's thread: the tests' reference answer."""
    return render_chunked(backend, plan.latent(backend.signature), plan.labels, chunk)
