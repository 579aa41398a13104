"""Generated digits from a running service's ``/balance``: the one use of serving/ from the
pipeline, through its public client and imported only when it runs (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.experiments.training_sets import Generate


def service_generator(url: str) -> Generate:
    """``/balance`` of a running service, through the project's client."""
    from serving.tools.client import DigitsClient

    def generate(
        counts: Sequence[int], targets: Sequence[int], seed: int, min_confidence: float | None
    ) -> tuple[np.ndarray, np.ndarray, float | None]:
        with DigitsClient(url, timeout=600) as client:
            got = client.balance(
                list(counts), target=list(targets), seed=seed, min_confidence=min_confidence
            )
        return got.images, got.labels, got.acceptance_rate

    return generate
