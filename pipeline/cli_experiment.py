"""``dcgan experiment balance``: the balancing experiment against a running service."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

experiment_app = typer.Typer(help="Experiments that measure what the service is for.")


def _digits(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


def _given(**options: float | None) -> dict[str, Any]:
    """The options given on the command line; the others keep BalanceSetup's defaults."""
    return {key: value for key, value in options.items() if value is not None}


@experiment_app.command("balance")
def balance(
    url: Annotated[str, typer.Option(envvar="DCGAN_URL", help="The running service.")] = (
        "http://127.0.0.1:8000"
    ),
    dataset: Annotated[str, typer.Option(help="mnist or fashion-mnist.")] = "mnist",
    keep: Annotated[float, typer.Option(help="Share of each rare class kept.")] = 0.01,
    rare: Annotated[str, typer.Option(help="The rare classes, e.g. 0,1,2,3,4.")] = "0,1,2,3,4",
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0,1,2.")] = "0,1,2",
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Classifier epochs [default: the recipe's, 3].")
    ] = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated, or all (pipeline.experiments.balance).")
    ] = "all",
    min_confidence: Annotated[
        float | None,
        typer.Option(help="The filter of the generated-filtered methods, 0..1 [default: 0.9]."),
    ] = None,
    scenario: Annotated[
        str,
        typer.Option(
            help="service (the running service's model), or an information boundary with a "
            "generator trained here: own-data, public, or oracle (an upper bound: its generator "
            "saw the rare images the skewed set lacks). See pipeline/experiments/scenarios.py."
        ),
    ] = "service",
    train_set: Annotated[
        list[str] | None,
        typer.Option("--set", help="Trainer option KEY=VALUE for a scenario's generator."),
    ] = None,
    work_dir: Annotated[
        Path, typer.Option(help="Where a scenario's generators train (reused when finished).")
    ] = Path("runs/scenarios"),
    out: Annotated[Path, typer.Option(help="Results directory.")] = Path("benchmarks/results"),
    tag: Annotated[str, typer.Option(help="Results file tag, e.g. the machine.")] = "cpu",
) -> None:
    """Skew a dataset, then balance it with generated digits vs the long-tail baselines (prior
    correction, oversampling, augmentation, class-weighted and logit-adjusted losses)."""
    from pipeline.data.loading import load_dataset
    from pipeline.experiments.balance import (
        METHODS,
        BalanceSetup,
        run_balance_experiment,
        service_generator,
    )
    from pipeline.experiments.scenarios import service_boundary
    from pipeline.machine import describe
    from serving.tools.client import DigitsClient

    try:
        setup = BalanceSetup(
            keep=keep,
            rare=_digits(rare),
            seeds=_digits(seeds),
            methods=(
                tuple(METHODS)
                if methods == "all"
                else tuple(m.strip() for m in methods.split(",") if m.strip())
            ),
            **_given(classifier_epochs=epochs, min_confidence=min_confidence),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if scenario != "service":
        _run_scenario(scenario, dataset, setup, train_set or [], work_dir, out, tag, keep, rare)
        return
    generate = None
    model: dict[str, object] = {}
    trained_on: str | None = None
    if setup.needs_service:
        with DigitsClient(url) as client:
            info = client.model()  # fails early, in one line, when the service is not there
        trained_on = (info.get("metrics") or {}).get("dataset")
        model = {"name": info["model"], "version": info["version"], "url": url}
        generate = service_generator(url)
    ds = load_dataset(dataset)
    started = time.perf_counter()
    results = run_balance_experiment(ds, generate, setup)
    results.update(
        {
            "machine": describe(),
            "dataset": dataset,
            "model": model,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    label = ""
    if generate is not None:
        results["boundary"] = service_boundary(trained_on)
        label = "UPPER BOUND (the service's model) "
    _write(results, out / f"balance-{dataset}-{tag}", keep, rare, len(setup.seeds), label)


def _write(
    results: dict[str, Any], prefix: Path, keep: float, rare: str, seeds: int, label: str
) -> None:
    """The results JSON and the recall plot, named by the day; the table on stdout."""
    from models.fileio import write_atomic
    from pipeline.experiments.balance import plot_recall

    day = time.strftime("%Y-%m-%d", time.gmtime())
    stem = prefix.with_name(f"{prefix.name}-{day}")
    write_atomic(stem.with_suffix(".json"), (json.dumps(results, indent=2) + "\n").encode())
    title = (
        f"{label}{results['dataset']}: {100 * keep:g}% of digits {rare} kept; classifier recall "
        f"per class (mean of {seeds} seeds)"
    )
    plot_recall(results, str(stem.with_suffix(".png")), title)
    typer.echo(results["table"])
    typer.echo(f"results: {stem}.json, plot: {stem}.png")


def _run_scenario(
    scenario: str,
    dataset: str,
    setup: Any,
    options: list[str],
    work_dir: Path,
    out: Path,
    tag: str,
    keep: float,
    rare: str,
) -> None:
    """The experiment within one information boundary, its generator trained here."""
    from pydantic import ValidationError

    from pipeline.data.loading import load_dataset
    from pipeline.experiments.scenarios import SCENARIOS, run_scenario
    from pipeline.machine import describe
    from pipeline.train_config import TrainConfig

    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"--scenario {scenario!r}: use service or one of {SCENARIOS}")
    pairs = dict(item.partition("=")[::2] for item in options)
    try:
        cfg = TrainConfig.model_validate(
            {k.strip().replace("-", "_"): v for k, v in pairs.items()} | {"dataset": dataset}
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(map(str, error["loc"]))
        raise typer.BadParameter(f"--set {loc}: {error['msg']}") from None
    ds = load_dataset(dataset)
    started = time.perf_counter()
    results = run_scenario(ds, scenario, setup, cfg, work_dir)
    results.update(
        {
            "machine": describe(),
            "dataset": dataset,
            "scenario": scenario,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    label = "UPPER BOUND (oracle) " if scenario == "oracle" else f"{scenario}: "
    _write(
        results, out / f"balance-{dataset}-{scenario}-{tag}", keep, rare, len(setup.seeds), label
    )
