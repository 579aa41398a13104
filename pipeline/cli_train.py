"""``dcgan train``: its options are TrainConfig's fields (name, default, help) plus the run's own
(where to write, what to resume); validation is TrainConfig's, so a bad value is one line, exit 2.
"""

from __future__ import annotations

import inspect
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo

from models.contract import SAMPLES_NAME
from pipeline.train_config import TrainConfig


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _cli_type(annotation: Any) -> Any:
    """The type click parses: choices (Literal) stay strings, so TrainConfig judges them and
    the message names the option and the allowed values the same way for every field."""
    if typing.get_origin(annotation) is typing.Literal:
        return str
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _cli_type(args[0]) | None
    return annotation


def _is_option(field: FieldInfo) -> bool:
    """Fields fixed by the data (``json_schema_extra={"cli": False}``) are not options."""
    extra = field.json_schema_extra
    return not (isinstance(extra, dict) and extra.get("cli") is False)


def _config_parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    flag = extra.get("flag")
    declarations = [str(flag)] if flag else []
    option = typer.Option(*declarations, help=field.description)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=field.default,
        annotation=Annotated[_cli_type(field.annotation), option],
    )


def _run_parameters() -> list[inspect.Parameter]:
    """The options of one run that are not part of its recipe."""

    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
        )

    return [
        option(
            "out",
            Annotated[Path, typer.Option(help="Run directory: checkpoint, metrics.json, samples.")],
            Path("runs/latest"),
        ),
        option(
            "resume",
            Annotated[
                Path | None, typer.Option(help="Checkpoint file or run directory to continue.")
            ],
            None,
        ),
        option(
            "run_id",
            Annotated[
                str | None,
                typer.Option(
                    help="Mirror each epoch's checkpoint to the registry store under this id, and "
                    "resume from it when the run is retried (DCGAN_REGISTRY_URI)."
                ),
            ],
            None,
        ),
        option("progress", Annotated[bool, typer.Option(help="Show a progress bar.")], True),
        option(
            "verbose",
            Annotated[bool, typer.Option("--verbose/--quiet", help="Log one line per epoch.")],
            True,
        ),
    ]


RUN_PARAMETERS = _run_parameters()
RUN_OPTIONS = {p.name for p in RUN_PARAMETERS}


def train(**options: Any) -> None:
    """Train a GAN; writes a checkpoint and a sample grid every epoch."""
    setup_logging(options["verbose"])
    cfg = TrainConfig(**{k: v for k, v in options.items() if k not in RUN_OPTIONS})
    out: Path = options["out"]
    resume: Path | None = options["resume"]
    from pipeline.data.loading import load_dataset
    from pipeline.train import train as run_training

    ds = load_dataset(cfg.dataset, cfg.data)
    on_epoch = None
    if options["run_id"] is not None:
        from models.registry.settings import open_registry
        from pipeline.checkpoint_sync import CheckpointSync

        registry = open_registry()
        sync = CheckpointSync(registry.store, registry.model, options["run_id"])
        resume = resume or sync.prepare_resume(out)
        on_epoch = sync.uploader(out)
    result = run_training(
        cfg, ds, out, resume=resume, progress=options["progress"], on_epoch=on_epoch
    )
    last, nan = (result.history[-1] if result.history else {}), float("nan")
    typer.echo(
        f"trained {result.gan_config.arch} to epoch {len(result.history)}: "
        f"loss_d={last.get('loss_d', nan):.3f} loss_g={last.get('loss_g', nan):.3f} "
        f"D(x)={last.get('d_x', nan):.2f} D(G(z))={last.get('d_g_z', nan):.2f}\n"
        f"checkpoint: {result.checkpoint}\nsamples:    {out / SAMPLES_NAME}"
    )
    if last.get("collapse_signals"):
        from pipeline.longtail import collapse_advice

        typer.echo(
            "warning: the run looks collapsed: "
            + "; ".join(last["collapse_signals"])
            + f"\n  it is never promoted; {collapse_advice(cfg)}",
            err=True,
        )


train.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        _config_parameter(name, field)
        for name, field in TrainConfig.model_fields.items()
        if not (
            isinstance(field.json_schema_extra, dict)
            and field.json_schema_extra.get("cli") is False
        )
    ]
    + RUN_PARAMETERS
)
