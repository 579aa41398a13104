"""``train-dcgan``: the retraining flow. It orchestrates the pipeline's plain functions and adds
only orchestration: retries on I/O, artifacts for the UI, and the promotion decision's record.

    load data -> train (resumes from the store's checkpoint when the flow run is retried)
      -> evaluate -> compare with production -> export + publish (parity-checked)
      -> promote only through the gate and when not worse than production (``force`` overrides)

Training itself is never retried blindly: a crash leaves the last epoch's checkpoint in the
store under the flow run's id, and a retry of the flow run (Prefect keeps the id) resumes there.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from models.contract import SAMPLES_NAME
from models.registry import Manifest, ModelRegistry
from models.registry.errors import VersionExists
from models.registry.settings import open_registry, registry_settings
from pipeline.checkpoint import load_checkpoint
from pipeline.checkpoint_sync import CheckpointSync
from pipeline.data.loading import ImageDataset, load_dataset
from pipeline.evaluation.options import EVAL, EvalOptions
from pipeline.evaluation.promotion import Decision, collapse_reason, compare_with_production
from pipeline.evaluation.run import Evaluation, evaluate_run
from pipeline.publish import check_same_dataset, production_model, publish_run
from pipeline.train import TrainResult, train
from pipeline.train_config import TrainConfig

IO_RETRIES = 3  # S3, downloads: retried with exponential backoff (2 s, 4 s, 8 s)
IO_BACKOFF = exponential_backoff(backoff_factor=2)
FLOW_NAME = "train-dcgan"
WORK_DIR_ENV = "DCGAN_FLOW_WORK_DIR"  # where runs train locally (default: <tmp>/dcgan-flow)
# The report's rows; a dotted key reads a nested value (the independent classifier's accuracy).
METRIC_KEYS = (
    "accuracy",
    "independent.accuracy",
    "fd",
    "tstr_accuracy",
    "inception_score",
    "class_entropy",
)


@task(
    name="load-dataset", cache_policy=NO_CACHE, retries=IO_RETRIES, retry_delay_seconds=IO_BACKOFF
)
def load_data(name: str, source: str | None) -> ImageDataset:
    return load_dataset(name, source)


@dataclass(frozen=True)
class Trained:
    result: TrainResult
    resumed_from: int | None  # the epoch of the checkpoint this training continued, if any


@task(name="train", cache_policy=NO_CACHE, retries=0)
def train_model(
    config: TrainConfig, dataset: ImageDataset, out_dir: Path, sync: CheckpointSync
) -> Trained:
    logger = get_run_logger()
    resume = sync.prepare_resume(out_dir)
    resumed_from = None
    if resume is not None:
        resumed_from = int(load_checkpoint(resume)["epoch"])
        logger.info(
            "resuming at epoch %d from the checkpoint of run %s (%s)",
            resumed_from,
            sync.run_id,
            sync.key,
        )
    progress_id = cast(UUID, create_progress_artifact(0.0, description="training epochs (%)"))
    upload = sync.uploader(out_dir)

    def on_epoch(record: dict[str, Any]) -> None:
        upload(record)
        epoch = int(record["epoch"])
        update_progress_artifact(progress_id, 100.0 * epoch / config.epochs)
        logger.info(
            "epoch %d/%d loss_d=%.3f loss_g=%.3f D(x)=%.2f D(G(z))=%.2f",
            epoch,
            config.epochs,
            record.get("loss_d", float("nan")),
            record.get("loss_g", float("nan")),
            record.get("d_x", float("nan")),
            record.get("d_g_z", float("nan")),
        )

    result = train(config, dataset, out_dir, resume=resume, progress=False, on_epoch=on_epoch)
    return Trained(result, resumed_from)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_model(run_dir: Path, dataset: ImageDataset, options: EvalOptions) -> Evaluation:
    result = evaluate_run(run_dir, options, dataset=dataset)
    get_run_logger().info(
        "evaluated: accuracy %.4f, fd %.2f, gate %s",
        result.payload["accuracy"],
        result.payload["fd"],
        "passed" if not result.failures else "FAILED: " + "; ".join(result.failures),
    )
    return result


@task(
    name="production-model",
    cache_policy=NO_CACHE,
    retries=IO_RETRIES,
    retry_delay_seconds=IO_BACKOFF,
)
@task(name="publish", cache_policy=NO_CACHE, retries=IO_RETRIES, retry_delay_seconds=IO_BACKOFF)
def publish_version(
    run_dir: Path, registry: ModelRegistry, version: str, decision: Decision
) -> Manifest:
    """Export (parity-checked) and publish with the decision recorded; promotion is a separate
    step. Idempotent on retry."""
    try:
        return publish_run(run_dir, registry, version=version, decision=decision).manifest
    except VersionExists:
        return registry.show(version)  # an earlier attempt published it and then failed


@task(name="promote", cache_policy=NO_CACHE, retries=IO_RETRIES, retry_delay_seconds=IO_BACKOFF)
def promote_version(registry: ModelRegistry, version: str) -> None:
    registry.promote(version)


def _report(
    version: str, evaluation: Evaluation, production: Manifest | None, decision: Decision
) -> str:
    old = production.metrics if production else {}
    rows = "\n".join(
        f"| {key} | {_fmt(_metric(evaluation.payload, key))} | {_fmt(_metric(old, key))} |"
        for key in METRIC_KEYS
    )
    verdict = "**promoted to production**" if decision.promote else "**not promoted**"
    gate = "passed" if not evaluation.failures else "failed: " + "; ".join(evaluation.failures)
    return (
        f"# {FLOW_NAME}: version `{version}`\n\n{verdict}: {decision.reason}\n\n"
        f"Quality gate: {gate}\n\n"
        f"| metric | this run | production ({production.version if production else 'none'}) |\n"
        f"|---|---|---|\n{rows}\n"
    )


def _metric(metrics: dict[str, Any], key: str) -> Any:
    """``metrics[key]``, following dots into nested dicts; None where absent."""
    value: Any = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)


def _samples_artifact(registry: ModelRegistry, version: str, run_dir: Path) -> None:
    """The sample grid: a presigned URL on S3 (an image in the UI), a file link locally."""
    key = registry.layout.file_key(version, SAMPLES_NAME)
    presign = getattr(registry.store, "presigned_get_url", None)
    if presign is not None:
        create_link_artifact(presign(key), link_text=f"samples of {version}", key="dcgan-samples")
    else:
        create_link_artifact(
            (run_dir / SAMPLES_NAME).resolve().as_uri(),
            link_text=f"samples of {version}",
            key="dcgan-samples",
        )


@flow(name=FLOW_NAME, log_prints=True)
def train_dcgan(
    config: TrainConfig | None = None,
    force: bool = False,
    evaluation: EvalOptions = EVAL,
    work_dir: str | None = None,
    resume_run: str | None = None,
    model_name: str | None = None,
) -> State[Any]:
    """Retrain, evaluate, publish, and promote if good enough. ``config`` holds every trainer
    option (validated), ``evaluation`` every evaluation option (the gate's thresholds too);
    ``force`` promotes even without a pass. Checkpoints are kept in the
    store under this flow run's id (a retry of the run resumes from them) or, with
    ``resume_run``, continue those of an earlier, crashed run. ``model_name``: the registry
    model published to (default DCGAN_REGISTRY_MODEL_NAME); each dataset has a model of its own."""
    config = config or TrainConfig()
    logger = get_run_logger()
    run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    version = f"run-{run_id[:8]}-{run_id[-12:]}"
    settings = registry_settings()
    if model_name:
        settings = settings.model_copy(update={"model_name": model_name})
    registry = open_registry(settings)
    check_same_dataset(production_model(registry), config.dataset, registry.model)
    lineage = resume_run or run_id
    sync = CheckpointSync(registry.store, registry.model, lineage)
    root = Path(
        work_dir or os.environ.get(WORK_DIR_ENV) or Path(tempfile.gettempdir()) / "dcgan-flow"
    )
    run_dir = root / lineage
    logger.info("flow run %s: training into %s, version %s", run_id, run_dir, version)

    dataset = load_data(config.dataset, config.data)
    trained = train_model(config, dataset, run_dir, sync)
    result = trained.result
    resumed = (
        f"; resumed at epoch {trained.resumed_from} of run {lineage}"
        if trained.resumed_from is not None
        else ""
    )
    create_table_artifact(
        [{k: v for k, v in r.items() if not isinstance(v, list | dict)} for r in result.history],
        key="dcgan-epochs",
        description="per-epoch training metrics",
    )
    evaluated = evaluate_model(run_dir, dataset, evaluation)
    production = production_model(registry)
    collapsed = collapse_reason(result.history)
    decision = (
        Decision(False, collapsed)
        if collapsed
        else compare_with_production(evaluated.payload, production, force)
    )
    logger.info(
        "promotion decision: %s (%s)", "promote" if decision.promote else "keep", decision.reason
    )
    manifest = publish_version(run_dir, registry, version, decision)
    if decision.promote:
        promote_version(registry, manifest.version)
    create_markdown_artifact(_report(version, evaluated, production, decision), key="dcgan-report")
    _samples_artifact(registry, version, run_dir)
    if decision.promote:
        return Completed(message=f"published and promoted {version}: {decision.reason}{resumed}")
    return Completed(
        name="Not promoted",
        message=f"published {version}, NOT promoted: {decision.reason}{resumed}",
    )
