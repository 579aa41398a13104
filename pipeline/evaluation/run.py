"""Evaluate a training run's checkpoint and write its report: what `dcgan evaluate` and the
retraining flow both call."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.contract import CLASSIFIER_NAME
from models.fileio import copy_atomic, sha256_file, write_atomic
from pipeline.checkpoint import load_generator, resolve_checkpoint_path
from pipeline.data.loading import ImageDataset, load_dataset
from pipeline.evaluation.classifier import (
    ClassifierRecipe,
    EvaluationClassifier,
    cache_path,
    get_classifier,
)
from pipeline.evaluation.metrics import (
    GeneratorReport,
    evaluate_generator,
    gate_failures,
    gate_thresholds,
)
from pipeline.evaluation.options import EVAL, EvalOptions
from pipeline.export.classifier_file import export_classifier
from pipeline.train import resolve_device

EVALUATION_NAME = "evaluation.json"  # beside the checkpoint; publish_run reads it


@dataclass(frozen=True)
class Evaluation:
    report: GeneratorReport
    failures: list[str]  # quality-gate failures; empty when it passed
    payload: dict[str, Any]  # what evaluation.json holds
    path: Path


def evaluate_run(
    checkpoint: Path,
    options: EvalOptions = EVAL,
    *,
    out: Path | None = None,
    data: str | None = None,
    dataset: ImageDataset | None = None,
    device: str = "auto",
    progress: bool = False,
) -> Evaluation:
    """Measure the checkpoint's generator as ``options`` say, judge the quality gate (thresholds
    relative to the dataset unless given), write the JSON report."""
    torch_device = resolve_device(device)
    generator, cfg, state = load_generator(checkpoint, torch_device)
    trained_on = state["train_config"]
    ds = dataset or load_dataset(trained_on["dataset"], data or trained_on.get("data"))
    classifier = get_classifier(ds, torch_device, progress=progress)
    report = evaluate_generator(
        generator,
        cfg,
        ds,
        classifier,
        device=torch_device,
        num_samples=options.samples,
        tstr_count=options.tstr_count if cfg.conditional else 0,
        tstr_epochs=options.tstr_epochs,
        progress=progress,
    )
    min_accuracy, max_fd = gate_thresholds(
        report.classifier_test_accuracy, report.fd_noisy, options.min_accuracy, options.max_fd
    )
    failures = gate_failures(report, min_accuracy, max_fd)
    resolved = resolve_checkpoint_path(checkpoint)
    path = out or resolved.parent / EVALUATION_NAME
    # The classifier that judged this run travels with it: publish_run ships it with the version.
    exported = classifier_onnx(classifier, ds, torch_device)
    copy_atomic(exported, resolved.parent / CLASSIFIER_NAME)
    payload = {
        "checkpoint": str(resolved),
        "epoch": state["epoch"],
        **report.to_dict(),
        "classifier": {
            "file": CLASSIFIER_NAME,
            "sha256": sha256_file(exported)[0],
            "dataset": ds.name,
            "test_accuracy": classifier.test_accuracy,
        },
        "gate": {
            "passed": not failures,
            "failures": failures,
            "min_accuracy": min_accuracy,
            "max_fd": max_fd,
        },
        "boundary": evaluation_boundary(state.get("dataset"), ds),
    }
    write_atomic(path, json.dumps(payload, indent=2).encode())
    return Evaluation(report, failures, payload, path)


def evaluation_boundary(generator_data: dict[str, Any] | None, ds: ImageDataset) -> dict[str, Any]:
    """What each part of the evaluation learnt from, in words: the generator's data as its
    checkpoint records it, the judges' and the scored split as this evaluation used them. A
    checkpoint that records other data (or none) is said to, not assumed to match."""
    own = ds.holdout is not None
    part, scored = ("part", "held-out part") if own else ("split", "test split")
    same = generator_data is not None and generator_data.get("md5") == ds.md5
    limit = (generator_data or {}).get("limit")
    subset = f"a {limit}-image subset of " if limit else ""
    generator = (
        f"the generator learnt only from {subset}{ds.name}'s training {part}"
        if same
        else f"the generator's checkpoint records other data than {ds.name} (or none), so nothing "
        f"here shows it never saw the {scored}"
    )
    statement = (
        f"{generator}; the evaluation classifier and the independent classifier learnt from "
        f"{ds.name}'s training {part} ({len(ds.train_labels)} images) and only judge; the "
        f"train-on-synthetic classifier learnt only from the generator's images; every score is "
        f"on the {scored} ({len(ds.test_labels)} images)"
    )
    return {"same_data": same, "scored_on": scored, "statement": statement}


def classifier_onnx(
    classifier: EvaluationClassifier, dataset: ImageDataset, device: torch.device
) -> Path:
    """The default evaluation classifier as ONNX, exported once per cached classifier (beside
    its weights, named by their sha256, so a retrained classifier is exported anew)."""
    weights = cache_path(dataset, ClassifierRecipe(), None, device)
    path = weights.with_name(f"{weights.stem}-{sha256_file(weights)[0][:12]}.onnx")
    if not path.is_file():
        with tempfile.TemporaryDirectory(prefix="dcgan-classifier-") as tmp:
            fresh = Path(tmp) / CLASSIFIER_NAME
            export_classifier(classifier.model, fresh)
            copy_atomic(fresh, path)
    return path
