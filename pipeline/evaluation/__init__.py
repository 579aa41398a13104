"""Evaluation of a generator with a digit classifier: accuracy, FD, IS, coverage, TSTR, gate.

Importing this package imports nothing heavy (the CLI and the torch-free API image read
``options`` and ``promotion``); torch comes in with the modules that need it:

- ``options``: the quality gate's thresholds and the sample counts, declared once (``EVAL``);
- ``classifier``: ``get_classifier(dataset, device)``, the evaluation classifier, cached on disk;
- ``metrics``: ``evaluate_generator(generator, cfg, dataset)`` -> ``GeneratorReport``, and the
  gate (``gate_failures``);
- ``run``: ``evaluate_run(checkpoint)``, what `dcgan evaluate` and the flow call;
- ``promotion``: whether a published version becomes production (a ``Decision`` and its reason);
- ``stats`` (numpy-only statistics) and ``report`` (the terminal table).
"""

from __future__ import annotations

import importlib
from typing import Any

# The package's public names, imported from their module on first use (PEP 562), so that
# ``import pipeline.evaluation.options`` stays torch-free.
_HOME = {
    **dict.fromkeys(
        (
            "ClassifierRecipe",
            "EvaluationClassifier",
            "accuracy",
            "cache_path",
            "get_classifier",
            "predict",
            "train_classifier",
        ),
        "classifier",
    ),
    **dict.fromkeys(
        (
            "EVAL_SEED",
            "GeneratorReport",
            "RealReference",
            "evaluate_generator",
            "gate_failures",
            "gate_thresholds",
            "real_reference",
            "served_images",
            "train_on_synthetic",
        ),
        "metrics",
    ),
    **dict.fromkeys(
        (
            "EVAL",
            "MAX_ACCURACY_DROP",
            "MAX_FD_SHARE",
            "MIN_CLASS_ENTROPY",
            "MIN_DIVERSITY_RATIO",
            "EvalOptions",
        ),
        "options",
    ),
    **dict.fromkeys(("Decision", "compare_with_production", "gate_decision"), "promotion"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
