"""``dcgan``: the command line. Thin wiring over the pipeline's plain functions.

Every failure a user can fix ends the command with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from models.errors import UserFacingError
from pipeline.cli_experiment import experiment_app
from pipeline.cli_models import models_app
from pipeline.cli_retrain import retrain
from pipeline.train_config import TrainConfig
from serving import cli as serving_cli
from serving.torchserve.cli import torchserve_app

app = typer.Typer(
    help="Train, evaluate and serve a conditional DCGAN for synthetic MNIST digits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Fetch and check datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(torchserve_app, name="torchserve")
app.add_typer(experiment_app, name="experiment")
app.command()(serving_cli.serve)
app.command()(retrain)
app.command()(serving_cli.generate)

_DEFAULTS = TrainConfig()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _validation_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if exc.title.endswith("Settings"):  # from the environment or .env, not from an option
        return f"invalid setting {loc} (a DCGAN_* environment variable or .env): {err['msg']}"
    field = loc.replace("_", "-")
    return f"invalid --{field}: {err['msg']}" if field else err["msg"]


@app.command()
def train(
    out: Annotated[
        Path, typer.Option(help="Run directory: checkpoint, metrics.json, samples.")
    ] = Path("runs/latest"),
    dataset: Annotated[str, typer.Option(help="mnist or fashion-mnist.")] = _DEFAULTS.dataset,
    data: Annotated[
        str | None,
        typer.Option(
            help="Directory of IDX files, s3://bucket/prefix, or unset for ./data + mirrors."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Train on a random subset of this many images.")
    ] = None,
    arch: Annotated[
        str, typer.Option(help="dcgan, or fc for the fully connected baseline.")
    ] = _DEFAULTS.arch,
    conditional: Annotated[
        bool, typer.Option("--conditional/--unconditional", help="Condition G and D on the digit.")
    ] = _DEFAULTS.conditional,
    latent_dim: Annotated[
        int, typer.Option(help="Size of the noise vector z.")
    ] = _DEFAULTS.latent_dim,
    g_width: Annotated[
        int, typer.Option(help="Generator base channels (ngf).")
    ] = _DEFAULTS.g_width,
    d_width: Annotated[
        int, typer.Option(help="Discriminator base channels (ndf).")
    ] = _DEFAULTS.d_width,
    epochs: Annotated[
        int, typer.Option(help="Total epochs (with --resume: the new total).")
    ] = _DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = _DEFAULTS.batch_size,
    lr_g: Annotated[float, typer.Option(help="Generator learning rate (Adam).")] = _DEFAULTS.lr_g,
    lr_d: Annotated[
        float, typer.Option(help="Discriminator learning rate (Adam).")
    ] = _DEFAULTS.lr_d,
    beta1: Annotated[float, typer.Option(help="Adam beta1.")] = _DEFAULTS.beta1,
    beta2: Annotated[float, typer.Option(help="Adam beta2.")] = _DEFAULTS.beta2,
    g_loss: Annotated[
        str,
        typer.Option(help="non-saturating (max log D(G(z))) or minimax (min log(1 - D(G(z))))."),
    ] = _DEFAULTS.g_loss,
    real_label: Annotated[
        float, typer.Option(help="Target for real images (one-sided label smoothing; 1.0 = off).")
    ] = _DEFAULTS.real_label,
    d_steps: Annotated[
        int, typer.Option(help="Discriminator updates per generator update.")
    ] = _DEFAULTS.d_steps,
    d_projection: Annotated[
        bool,
        typer.Option(
            "--d-projection/--no-d-projection", help="D also scores the class by projection."
        ),
    ] = _DEFAULTS.d_projection,
    ema_decay: Annotated[
        float,
        typer.Option(help="Serve a moving average of G's weights with this decay (0 = off)."),
    ] = _DEFAULTS.ema_decay,
    seed: Annotated[
        int, typer.Option(help="Seed: same seed, device and data -> same run.")
    ] = _DEFAULTS.seed,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = _DEFAULTS.device,
    precision: Annotated[
        str, typer.Option(help="auto (DCGAN_PRECISION, else bf16 only where native), fp32 or bf16.")
    ] = _DEFAULTS.precision,
    compile: Annotated[bool, typer.Option(help="torch.compile the networks.")] = _DEFAULTS.compile,
    resume: Annotated[
        Path | None, typer.Option(help="Checkpoint file or run directory to continue.")
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Mirror each epoch's checkpoint to the registry store under this id, and resume "
            "from it when the run is retried (DCGAN_REGISTRY_URI)."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    verbose: Annotated[
        bool, typer.Option("--verbose/--quiet", help="Log one line per epoch.")
    ] = True,
) -> None:
    """Train a GAN; writes a checkpoint and a sample grid every epoch."""
    _setup_logging(verbose)
    options: dict[str, Any] = {
        k: v
        for k, v in locals().items()
        if k not in {"out", "resume", "run_id", "progress", "verbose"}
    }
    cfg = TrainConfig(**options)
    from pipeline.data.loading import load_dataset
    from pipeline.train import train as run_training

    ds = load_dataset(cfg.dataset, cfg.data)
    on_epoch = None
    if run_id is not None:
        from models.registry.settings import open_registry
        from pipeline.checkpoint_sync import CheckpointSync

        registry = open_registry()
        sync = CheckpointSync(registry.store, registry.model, run_id)
        resume = resume or sync.prepare_resume(out)
        on_epoch = sync.uploader(out)
    result = run_training(cfg, ds, out, resume=resume, progress=progress, on_epoch=on_epoch)
    last, nan = (result.history[-1] if result.history else {}), float("nan")
    typer.echo(
        f"trained {result.gan_config.arch} to epoch {len(result.history)}: "
        f"loss_d={last.get('loss_d', nan):.3f} loss_g={last.get('loss_g', nan):.3f} "
        f"D(x)={last.get('d_x', nan):.2f} D(G(z))={last.get('d_g_z', nan):.2f}\n"
        f"checkpoint: {result.checkpoint}\nsamples:    {out / 'samples.png'}"
    )


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")],
    out: Annotated[
        Path | None, typer.Option(help="JSON report (default: <run dir>/evaluation.json).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Dataset source, as for train.")] = None,
    samples: Annotated[
        int, typer.Option(min=100, help="Generated digits for accuracy, FD, IS.")
    ] = 10_000,
    tstr_count: Annotated[
        int,
        typer.Option(min=0, help="Generated digits to train the TSTR classifier on (0 skips it)."),
    ] = 60_000,
    tstr_epochs: Annotated[int, typer.Option(min=1, help="Epochs of the TSTR classifier.")] = 3,
    min_accuracy: Annotated[float, typer.Option(help="Quality gate: conditional accuracy.")] = 0.97,
    max_fd: Annotated[float | None, typer.Option(help="Quality gate: Frechet distance.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    verbose: Annotated[
        bool, typer.Option("--verbose/--quiet", help="Log the classifier's epochs and timings.")
    ] = True,
) -> None:
    """Measure a generator with a classifier of its own (never the discriminator)."""
    _setup_logging(verbose)
    from pipeline.evaluation.report import print_report
    from pipeline.evaluation.run import evaluate_run

    result = evaluate_run(
        checkpoint,
        out=out,
        data=data,
        samples=samples,
        tstr_count=tstr_count,
        tstr_epochs=tstr_epochs,
        min_accuracy=min_accuracy,
        max_fd=max_fd,
        device=device,
        progress=progress,
    )
    print_report(result.report, result.failures)
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


def main() -> None:
    """Console entry point: map user errors to one line and exit code 2."""
    try:
        app(standalone_mode=False)
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
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch's checkpoint is kept", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
