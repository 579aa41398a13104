"""Evaluation of a generator with a digit classifier: accuracy, FD, IS, coverage, TSTR, gate.

- ``get_classifier(dataset, device)``: (classifier, real test accuracy), cached on disk;
- ``evaluate_generator(generator, cfg, dataset)``: a ``GeneratorReport`` (``to_dict()`` for JSON);
- ``passes_gate(report)`` / ``gate_failures(report)``: the quality gate before publishing;
- ``promotion``: whether a published version becomes production (a ``Decision`` with its reason).
"""

from pipeline.evaluation.classifier import (
    ClassifierRecipe,
    EvaluationClassifier,
    accuracy,
    cache_path,
    get_classifier,
    predict,
    train_classifier,
)
from pipeline.evaluation.metrics import (
    EVAL_SEED,
    MAX_FD,
    MIN_CLASS_ENTROPY,
    MIN_DIVERSITY_RATIO,
    GeneratorReport,
    RealReference,
    evaluate_generator,
    gate_failures,
    passes_gate,
    real_reference,
    served_images,
    train_on_synthetic,
)

__all__ = [
    "EVAL_SEED",
    "MAX_FD",
    "MIN_CLASS_ENTROPY",
    "MIN_DIVERSITY_RATIO",
    "ClassifierRecipe",
    "EvaluationClassifier",
    "GeneratorReport",
    "RealReference",
    "accuracy",
    "cache_path",
    "evaluate_generator",
    "gate_failures",
    "get_classifier",
    "passes_gate",
    "predict",
    "real_reference",
    "served_images",
    "train_classifier",
    "train_on_synthetic",
]
