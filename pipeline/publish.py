"""Publish a training run as a registry version: export, check parity, upload, manifest last.

Nothing reaches the registry unless both exports pass their parity checks; the registry writes
the manifest after every file, so an interrupted publish leaves no visible version. The
checkpoint is read once (its generator is exported from the state that fills the manifest) and
each file hashed once: the export's and the classifier's sums travel to the registry with them.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.contract import CHECKPOINT_NAME, CLASSIFIER_NAME, PRODUCTION, SAMPLES_NAME
from models.fileio import sha256_file
from models.registry import FileEntry, Manifest, ModelRegistry
from models.registry.errors import AliasNotFound, BucketMissing, VersionNotFound
from pipeline.checkpoint import load_generator, resolve_checkpoint_path
from pipeline.errors import CheckpointError, DatasetMismatch
from pipeline.evaluation.promotion import Decision, gate_decision
from pipeline.evaluation.run import EVALUATION_NAME
from pipeline.export import ArtifactFile, export_generator


def code_version() -> str | None:
    """The git commit of this code (``+dirty`` when modified), or None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty=+dirty", "--abbrev=12"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def read_evaluation(run_dir: Path) -> dict[str, Any]:
    """The run's evaluation report (``dcgan evaluate``), or {} when it was not evaluated."""
    path = run_dir / EVALUATION_NAME
    if not path.is_file():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable evaluation report: {exc}") from exc
    return data


def evaluation_classifier(run_dir: Path, evaluation: dict[str, Any]) -> ArtifactFile | None:
    """The classifier that evaluated the run (ONNX, for filtered answers) with its sha256, when
    the report names it and the file beside it is that one; a run evaluated before classifiers
    were kept has none."""
    named = evaluation.get("classifier", {})
    path = run_dir / CLASSIFIER_NAME
    if not named or not path.is_file():
        return None
    sha256, size = sha256_file(path)
    if sha256 != named.get("sha256"):
        raise CheckpointError(
            f"{path} is not the classifier {EVALUATION_NAME} names: run `dcgan evaluate` again"
        )
    return ArtifactFile(path, sha256, size)


def production_model(registry: ModelRegistry) -> Manifest | None:
    """The model's production version, or None while nothing is published there."""
    try:
        return registry.show(PRODUCTION)
    except (AliasNotFound, VersionNotFound, BucketMissing):
        return None


def check_same_dataset(production: Manifest | None, dataset: str, model: str) -> None:
    """A model's versions are all trained on one dataset: a run on another would be judged
    against, and could replace, a generator of other images. The flow checks before training;
    every publish checks again."""
    if production is None:
        return
    trained_on = production.training_config.get("dataset", "mnist")
    if trained_on != dataset:
        raise DatasetMismatch(
            f"model {model}'s production version {production.version} was trained on "
            f"{trained_on}, this run is on {dataset}: publish it under a model of its own "
            f"(DCGAN_REGISTRY_MODEL_NAME=cdcgan-{dataset}, or "
            f"dcgan retrain --model cdcgan-{dataset})"
        )


@dataclass(frozen=True)
class PublishResult:
    manifest: Manifest
    promoted: bool
    reason: str  # why it was or was not promoted


def publish_run(
    run: Path,
    registry: ModelRegistry,
    *,
    version: str | None = None,
    promote: bool = False,
    force: bool = False,
    decision: Decision | None = None,
) -> PublishResult:
    """Export the run's generator and publish it with its checkpoint, samples and metrics.

    With ``promote``, production moves to the new version only if its evaluation passed the
    quality gate (or ``force``); the version is published either way. ``decision`` replaces
    that rule (the flow also compares with production). Whenever there is a
    decision it is recorded in the manifest (``extra.promotion``); without ``promote`` the
    caller moves the alias itself.
    """
    checkpoint = resolve_checkpoint_path(run)
    run_dir = checkpoint.parent
    generator, gan_config, state = load_generator(checkpoint)  # the one read of the checkpoint
    check_same_dataset(production_model(registry), state["train_config"]["dataset"], registry.model)
    evaluation = read_evaluation(run_dir)
    if promote and decision is None:
        decision = gate_decision(evaluation, force)
    with tempfile.TemporaryDirectory(prefix="dcgan-export-") as tmp:
        exported = export_generator(generator, gan_config, Path(tmp) / "export")
        classifier = evaluation_classifier(run_dir, evaluation)
        hashed = [*exported.files, *([classifier] if classifier is not None else [])]
        files: dict[str, Path] = {artifact.path.name: artifact.path for artifact in hashed}
        files[CHECKPOINT_NAME] = checkpoint
        if (run_dir / SAMPLES_NAME).is_file():
            files[SAMPLES_NAME] = run_dir / SAMPLES_NAME
        export_info = exported.to_manifest()
        manifest = registry.publish(
            files,
            hashed={a.path.name: FileEntry(sha256=a.sha256, size=a.size) for a in hashed},
            version=version,
            signature=exported.signature,
            metrics={
                k: v for k, v in evaluation.items() if k not in ("checkpoint", "gate", "classifier")
            },
            training_config={
                **state["train_config"],
                "epochs_trained": state["epoch"],
                **({"precision_used": state["precision"]} if "precision" in state else {}),
            },
            dataset_md5=state.get("dataset", {}).get("md5", {}),
            code_version=code_version(),
            library_versions=export_info.pop("versions"),
            extra={
                "export": {k: v for k, v in export_info.items() if k not in ("files", "signature")},
                "gan_config": state["gan_config"],
                "dataset": {k: v for k, v in state.get("dataset", {}).items() if k != "md5"},
                "quality_gate": evaluation.get("gate"),
                **({"classifier": evaluation["classifier"]} if classifier is not None else {}),
                **({"promotion": decision.to_manifest()} if decision else {}),
            },
        )
    if not promote or decision is None:
        return PublishResult(manifest, False, "not asked to promote")
    if decision.promote:
        registry.promote(manifest.version)
    return PublishResult(manifest, decision.promote, decision.reason)
