"""``dcgan``: the command line. Thin wiring over the pipeline's plain functions.

Every failure a user can fix ends the command with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from models.errors import UserFacingError
from pipeline.cli_experiment import experiment_app
from pipeline.cli_keys import keys_app
from pipeline.cli_models import models_app
from pipeline.cli_retrain import retrain
from pipeline.cli_train import setup_logging, train
from pipeline.evaluation.options import EVAL, EvalOptions

app = typer.Typer(
    help="Train, evaluate and serve a conditional DCGAN for synthetic MNIST digits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Fetch and check datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(experiment_app, name="experiment")
app.command()(retrain)
app.command()(train)
log = logging.getLogger("dcgan.cli")
COMMANDS_GROUP = "dcgan.commands"  # other packages' commands (pyproject.toml), e.g. serve


def _add_installed_commands() -> None:
    """Add the commands other packages declare under ``dcgan.commands``: serving's among them,
    so this module (floor 2) never imports serving (floor 3)."""
    entries = entry_points(group=COMMANDS_GROUP)
    if not entries:
        log.warning(
            "no %s entry points installed: dcgan serve, generate and torchserve are missing; "
            "reinstall the project (pip install -e .) to register them",
            COMMANDS_GROUP,
        )
    for entry in sorted(entries, key=lambda e: e.name):
        target = entry.load()
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=entry.name)
        else:
            app.command(entry.name)(target)


_add_installed_commands()


def _validation_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if exc.title.endswith("Settings"):  # from the environment or .env, not from an option
        return f"invalid setting {loc} (a DCGAN_* environment variable or .env): {err['msg']}"
    field = loc.replace("_", "-")
    return f"invalid --{field}: {err['msg']}" if field else err["msg"]


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")],
    out: Annotated[
        Path | None, typer.Option(help="JSON report (default: <run dir>/evaluation.json).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Dataset source, as for train.")] = None,
    samples: Annotated[
        int, typer.Option(min=100, help="Generated digits for accuracy, FD, IS.")
    ] = EVAL.samples,
    tstr_count: Annotated[
        int,
        typer.Option(min=0, help="Generated digits to train the TSTR classifier on (0 skips it)."),
    ] = EVAL.tstr_count,
    tstr_epochs: Annotated[
        int, typer.Option(min=1, help="Epochs of the TSTR classifier.")
    ] = EVAL.tstr_epochs,
    min_accuracy: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Quality gate: conditional accuracy [default: the classifier's real-test "
            "accuracy - 0.025].",
        ),
    ] = EVAL.min_accuracy,
    max_fd: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Quality gate: Frechet distance [default: 0.75 x the FD of real digits with "
            "10% pixel noise].",
        ),
    ] = EVAL.max_fd,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    verbose: Annotated[
        bool, typer.Option("--verbose/--quiet", help="Log the classifier's epochs and timings.")
    ] = True,
) -> None:
    """Measure a generator with a classifier of its own (never the discriminator)."""
    setup_logging(verbose)
    from pipeline.evaluation.report import print_report
    from pipeline.evaluation.run import evaluate_run

    options = EvalOptions(samples, tstr_count, tstr_epochs, min_accuracy, max_fd)
    result = evaluate_run(checkpoint, options, out=out, data=data, device=device, progress=progress)
    print_report(result.report, result.failures, result.payload["gate"])
    typer.echo(f"report: {result.path}")


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")],
    out: Annotated[
        Path, typer.Option(help="Directory for generator.onnx and .torchscript.pt.")
    ] = Path("export"),
) -> None:
    """Export the generator to ONNX and TorchScript, checking parity against eager PyTorch."""
    from pipeline.export import export_checkpoint

    result = export_checkpoint(checkpoint, out)
    for check in result.parity:
        typer.echo(
            f"parity {check.backend:<11} batch {check.batch_size:>4}: "
            f"max |diff| {check.max_abs_diff:.2e}"
        )
    for artifact in result.files:
        typer.echo(f"{artifact.path}  {artifact.size} bytes  sha256 {artifact.sha256[:16]}...")


@app.command()
def publish(
    run: Annotated[Path, typer.Argument(help="Run directory (or its checkpoint) to publish.")],
    version: Annotated[
        str | None, typer.Option(help="Version id (default: UTC time + random).")
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Point production at it if it passed the quality gate.")
    ] = False,
    force: Annotated[
        bool, typer.Option(help="With --promote: promote even without a pass.")
    ] = False,
) -> None:
    """Export, parity-check and publish a run to the registry (DCGAN_REGISTRY_URI)."""
    from models.registry.settings import open_registry
    from pipeline.publish import publish_run

    result = publish_run(run, open_registry(), version=version, promote=promote, force=force)
    typer.echo(f"published {result.manifest.model_name} {result.manifest.version}")
    if promote:
        verdict = "promoted to production" if result.promoted else "NOT promoted"
        typer.echo(f"{verdict}: {result.reason}")


@data_app.command("fetch")
def data_fetch(
    dataset: Annotated[str, typer.Option(help="mnist or fashion-mnist.")] = "mnist",
    source: Annotated[
        str | None, typer.Option(help="Directory, s3://bucket/prefix, or unset for mirrors.")
    ] = None,
) -> None:
    """Fetch a dataset (if needed) and verify every file's md5."""
    from pipeline.data.loading import load_dataset

    ds = load_dataset(dataset, source)
    typer.echo(
        f"{ds.name}: {len(ds.train_labels)} train + {len(ds.test_labels)} test images, "
        "md5s verified"
    )


def one_line(message: str) -> str:
    """``message`` on one printable line: control characters (a newline in a file name of the
    user's data, an escape sequence) are shown escaped, never obeyed by the terminal."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in message)


def main() -> None:
    """Console entry point: map user errors to one line and exit code 2."""
    try:
        # Outside standalone mode click returns a command's typer.Exit code instead of raising.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: bad option values, unknown options
        print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:
        print(f"error: {_validation_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except UserFacingError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch's checkpoint is kept", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
