"""``dcgan retrain``: run the train-dcgan flow through a Prefect server's deployment when one is
configured (PREFECT_API_URL), else in this process (Prefect's ephemeral mode)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import Annotated, Any, cast

import typer

from models.registry.names import check_model_name
from pipeline.errors import RetrainError
from pipeline.evaluation.options import EVAL, EvalOptions
from pipeline.train_config import TrainConfig

DEFAULT_DEPLOYMENT = "train-dcgan/gpu"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        params[key.strip().replace("-", "_")] = value.strip()
    return params


def merged_config(deployed: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The flow's ``config`` for a server run: the deployment's (prefect.yaml), with the options
    given on the command line on top. Prefect replaces a top-level parameter whole, so without
    this ``--set`` would drop the deployment's ``data``. A ``data`` source belongs to one dataset:
    asking for another dataset without ``--data`` leaves the deployment's out (the worker then
    fetches that dataset itself) rather than training it on the wrong files."""
    deployed_dataset = deployed.get("dataset", TrainConfig.model_fields["dataset"].default)
    base = dict(deployed)
    if "data" not in given and given.get("dataset", deployed_dataset) != deployed_dataset:
        base.pop("data", None)
    return {**base, **given}


def retrain(
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    limit: Annotated[int | None, typer.Option(help="Train on the first N images only.")] = None,
    data: Annotated[
        str | None, typer.Option(help="Directory or s3://bucket/prefix of the IDX files.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any trainer option as KEY=VALUE (e.g. g_loss=minimax)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Promote even without passing the gate.")] = False,
    eval_samples: Annotated[
        int, typer.Option(min=100, help="Digits to evaluate on.")
    ] = EVAL.samples,
    tstr_count: Annotated[
        int, typer.Option(min=0, help="Digits for train-on-synthetic (0 skips it).")
    ] = EVAL.tstr_count,
    deployment: Annotated[
        str, typer.Option(help="Deployment to run when a Prefect server is configured.")
    ] = DEFAULT_DEPLOYMENT,
    watch: Annotated[bool, typer.Option(help="Follow a server run to its end.")] = False,
    resume_run: Annotated[
        str | None,
        typer.Option(help="Continue the checkpoints of an earlier (crashed) flow run, by its id."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Registry model to publish to (default DCGAN_REGISTRY_MODEL_NAME); one per "
            "dataset, e.g. cdcgan-fashion-mnist."
        ),
    ] = None,
) -> None:
    """Retrain, evaluate, publish and promote (if good enough) with the train-dcgan flow."""
    options = _parse_params(set_ or [])
    options.update(
        {k: v for k, v in (("epochs", epochs), ("limit", limit), ("data", data)) if v is not None}
    )
    config = TrainConfig(**options)  # ValidationError -> one line, exit 2
    if model is not None:
        check_model_name(model)  # InvalidName -> one line, exit 2
    evaluation = EvalOptions(samples=eval_samples, tstr_count=tstr_count)
    parameters: dict[str, Any] = {
        "config": config.model_dump(mode="json", exclude_unset=True),
        "force": force,
        "evaluation": dataclasses.asdict(evaluation),
        "resume_run": resume_run,
        "model_name": model,
    }
    if os.environ.get("PREFECT_API_URL"):
        _run_on_server(deployment, parameters, watch)
        return
    from pipeline.flow import train_dcgan

    state = train_dcgan(
        config=config,
        force=force,
        evaluation=evaluation,
        resume_run=resume_run,
        model_name=model,
        return_state=True,
    )
    typer.echo(f"{state.name}: {state.message}")
    if not state.is_completed():
        raise typer.Exit(1)


def _run_on_server(deployment: str, parameters: dict[str, Any], watch: bool) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_UI_URL

    try:
        deployed = asyncio.run(_deployed_config(deployment))
        config = merged_config(deployed, parameters["config"])
        TrainConfig(**config)  # the merge must still be a valid config: one line, exit 2
        parameters = {**parameters, "config": config}
        run = cast(FlowRun, run_deployment(name=deployment, parameters=parameters, timeout=0))
    except ObjectNotFound:
        raise RetrainError(
            f"no deployment {deployment!r} on {os.environ['PREFECT_API_URL']}: "
            "run `prefect deploy --all` (prefect.yaml) first"
        ) from None
    ui = PREFECT_UI_URL.value()
    typer.echo(
        f"flow run {run.name} ({run.id}) scheduled: {ui}/runs/flow-run/{run.id}"
        if ui
        else f"flow run {run.id}"
    )
    if watch:
        state = asyncio.run(_watch(run.id))
        typer.echo(f"{state.name}: {state.message}")
        if state.type.value != "COMPLETED":
            raise typer.Exit(1)


async def _deployed_config(name: str) -> dict[str, Any]:
    """The ``config`` parameter the deployment was registered with ({} when it has none)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
    config = (deployment.parameters or {}).get("config") or {}
    return dict(config) if isinstance(config, dict) else {}


async def _watch(flow_run_id: Any, poll_s: float = 2.0) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        last = None
        while True:
            run = await client.read_flow_run(flow_run_id)
            state = run.state
            if state is not None and state.name != last:
                typer.echo(f"  {time.strftime('%H:%M:%S')} {state.name}")
                last = state.name
            if state is not None and state.type.value in FINAL:
                return state
            await asyncio.sleep(poll_s)
