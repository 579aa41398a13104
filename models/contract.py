"""The contracts every component shares (docs/ARCHITECTURE.md), numpy only, importable anywhere.

1. Seed -> latent (:func:`latent_for_seed`) and request -> labels (:func:`labels_for_request`):
   training samples, evaluation, ONNX serving and the TorchServe handler all call these, so the
   same (model version, seed, n, labels) gives the same images everywhere, and a request for n
   images is a prefix of one for m > n. Filtered answers draw further candidates per image
   (:func:`candidate_latent`) and keep that property.
2. The generator signature (:class:`GeneratorSignature`), recorded in checkpoints and manifests,
   and the pixels users get (:func:`to_uint8`).
3. The artifact file names of a published version and the aliases the tools move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# -- 3. artifacts and aliases ---------------------------------------------------------------------

ONNX_NAME = "generator.onnx"  # what the ONNX Runtime service loads
TORCHSCRIPT_NAME = "generator.torchscript.pt"  # what the TorchServe handler loads
CHECKPOINT_NAME = "checkpoint.pt"  # weights, optimiser state, config: resume and re-export
SAMPLES_NAME = "samples.png"  # a grid, one row per digit, for people
MANIFEST_NAME = "manifest.json"  # written last: its presence publishes the version
SIGNATURE_NAME = "manifest.sig"  # the publisher's signature of the manifest, written just before it
# The evaluation classifier, for filtered answers: pixels uint8[N, 28, 28] -> probabilities
# float32[N, classes]. Optional: a version published without an evaluation has none.
CLASSIFIER_NAME = "classifier.onnx"
CLASSIFIER_INPUT = "pixels"
CLASSIFIER_OUTPUT = "probabilities"

PRODUCTION = "production"  # the alias servers follow and promotion moves
LATEST = "latest"  # moved by every publish to the newest version

# -- 1. seed -> latent, request -> labels ----------------------------------------------------------

MAX_SEED = 2**63 - 1
NUM_CLASSES = 10
# Candidates a filtered image may draw before it is left out (the service's
# DCGAN_SERVE_MAX_CANDIDATES default, every backend, and the balancing experiment's filter).
DEFAULT_MAX_CANDIDATES = 16


def latent_for_seed(seed: int, n: int, latent_dim: int) -> np.ndarray:
    """Return ``z`` of shape (n, latent_dim), float32, standard normal, from a PCG64 stream.

    Row i depends only on (seed, i): numpy fills the array row by row from one stream, so the
    first n rows for a seed are the same whatever the total count.
    """
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal((n, latent_dim), dtype=np.float32)


def candidate_latent(seed: int, k: int, n: int, latent_dim: int) -> np.ndarray:
    """``z`` of candidate ``k`` for each of a request's n images, for classifier-filtered answers.

    Candidate 0 is :func:`latent_for_seed` itself, so a filter that accepts everything gives the
    unfiltered images; candidate k > 0 comes from its own PCG64 stream, seeded by (seed, k). Row i
    depends only on (seed, k, i): image i of a filtered answer is its first accepted candidate,
    the same whatever the request's size, so filtered answers stay deterministic and
    prefix-stable too.
    """
    if k == 0:
        return latent_for_seed(seed, n, latent_dim)
    if not 0 <= seed <= MAX_SEED or k < 0:
        raise ValueError(f"seed must be in 0..{MAX_SEED} and k >= 0, got seed={seed}, k={k}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, k))))
    return rng.standard_normal((n, latent_dim), dtype=np.float32)


def labels_for_request(n: int, digits: int | Sequence[int] | None) -> np.ndarray:
    """Labels (int64[n]) for a request: one digit for all, a list repeated (or cut) to ``n``
    images (image i is ``digits[i % len(digits)]``), or the cycle 0..9. So a smaller batch of
    the same request is always a prefix of a larger one."""
    if digits is None:
        return np.arange(n, dtype=np.int64) % NUM_CLASSES
    if isinstance(digits, int | np.integer):
        labels = np.full(n, int(digits), dtype=np.int64)
    else:
        listed = np.asarray(list(digits), dtype=np.int64)
        if not listed.size:
            raise ValueError("digits is an empty list: give at least one digit, or none")
        labels = np.resize(_in_range(listed), n)
    return _in_range(labels)


def _in_range(labels: np.ndarray) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"digits must be in 0..{NUM_CLASSES - 1}")
    return labels


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 pixels: round((x + 1) * 127.5) clipped to 0..255."""
    pixels: np.ndarray = np.clip(np.rint((images.astype(np.float32) + 1.0) * 127.5), 0, 255)
    return pixels.astype(np.uint8)


def grid_labels(rows: int = NUM_CLASSES, per_row: int = NUM_CLASSES) -> np.ndarray:
    """Labels for a sample grid with one row per digit: 0 0 0 ... 1 1 1 ... 9 9 9."""
    return np.repeat(np.arange(rows, dtype=np.int64) % NUM_CLASSES, per_row)


# -- 2. the generator signature -------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorSignature:
    """Inputs ``z float32[N, latent_dim]`` (+ ``labels int64[N]`` if conditional);
    output ``float32[N, channels, size, size]`` in [-1, 1]."""

    latent_dim: int
    conditional: bool
    num_classes: int = 10
    channels: int = 1
    image_size: int = 28

    @property
    def input_names(self) -> list[str]:
        return ["z", "labels"] if self.conditional else ["z"]

    @property
    def output_name(self) -> str:
        return "images"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "inputs": {
                "z": ["N", self.latent_dim],
                **({"labels": ["N"]} if self.conditional else {}),
            },
            "output": {self.output_name: ["N", self.channels, self.image_size, self.image_size]},
            "output_range": [-1.0, 1.0],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorSignature:
        fields = {"latent_dim", "conditional", "num_classes", "channels", "image_size"}
        return cls(**{k: v for k, v in data.items() if k in fields})
