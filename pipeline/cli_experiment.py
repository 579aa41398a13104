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
    out: Annotated[Path, typer.Option(help="Results directory.")] = Path("benchmarks/results"),
    tag: Annotated[str, typer.Option(help="Results file tag, e.g. the machine.")] = "cpu",
) -> None:
    """Skew a dataset, then balance it with generated digits vs the long-tail baselines (prior
    correction, oversampling, augmentation, class-weighted and logit-adjusted losses)."""
    from models.fileio import write_atomic
    from pipeline.data.loading import load_dataset
    from pipeline.experiments.balance import (
        METHODS,
        BalanceSetup,
        plot_recall,
        run_balance_experiment,
        service_generator,
    )
    from pipeline.machine import describe
    from serving.client import DigitsClient

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
    generate = None
    model: dict[str, object] = {}
    if setup.needs_service:
        with DigitsClient(url) as client:
            info = client.model()  # fails early, in one line, when the service is not there
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
    day = time.strftime("%Y-%m-%d", time.gmtime())
    stem = out / f"balance-{dataset}-{tag}-{day}"
    write_atomic(stem.with_suffix(".json"), (json.dumps(results, indent=2) + "\n").encode())
    title = (
        f"{dataset}: {100 * keep:g}% of digits {rare} kept; classifier recall per class "
        f"(mean of {len(setup.seeds)} seeds)"
    )
    plot_recall(results, str(stem.with_suffix(".png")), title)
    typer.echo(results["table"])
    typer.echo(f"results: {stem}.json, plot: {stem}.png")
