"""Evaluate a training run's checkpoint and write its report: what `dcgan evaluate` and the
retraining flow both call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.fileio import write_atomic
from pipeline.checkpoint import load_generator, resolve_checkpoint_path
from pipeline.data.loading import ImageDataset, load_dataset
from pipeline.evaluation.metrics import GeneratorReport, evaluate_generator, gate_failures
from pipeline.evaluation.options import EVAL, MAX_FD
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
    *,
    out: Path | None = None,
    data: str | None = None,
    dataset: ImageDataset | None = None,
    samples: int = EVAL.samples,
    tstr_count: int = EVAL.tstr_count,
    tstr_epochs: int = EVAL.tstr_epochs,
    min_accuracy: float = EVAL.min_accuracy,
    max_fd: float | None = None,
    device: str = "auto",
    progress: bool = False,
) -> Evaluation:
    """Measure the checkpoint's generator, judge the quality gate, write the JSON report."""
    torch_device = resolve_device(device)
    generator, cfg, state = load_generator(checkpoint, torch_device)
    ds = dataset or load_dataset(state["train_config"]["dataset"], data)
    report = evaluate_generator(
        generator,
        cfg,
        ds,
        device=torch_device,
        num_samples=samples,
        tstr_count=tstr_count if cfg.conditional else 0,
        tstr_epochs=tstr_epochs,
        progress=progress,
    )
    threshold = MAX_FD if max_fd is None else max_fd
    failures = gate_failures(report, min_accuracy, threshold)
    resolved = resolve_checkpoint_path(checkpoint)
    path = out or resolved.parent / EVALUATION_NAME
    payload = {
        "checkpoint": str(resolved),
        "epoch": state["epoch"],
        **report.to_dict(),
        "gate": {
            "passed": not failures,
            "failures": failures,
            "min_accuracy": min_accuracy,
            "max_fd": threshold,
        },
    }
    write_atomic(path, json.dumps(payload, indent=2).encode())
    return Evaluation(report, failures, payload, path)
