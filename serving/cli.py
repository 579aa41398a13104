"""``dcgan serve`` and ``dcgan generate``: run the API, and fetch digits from it into a file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from models.fileio import write_atomic
from serving.client import DEFAULT_URL, DigitsClient

SUFFIXES = (".npz", ".npy", ".png")


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (DCGAN_SERVE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (DCGAN_SERVE_PORT).")] = None,
) -> None:
    """Serve /generate from the registry's production model (ONNX Runtime; settings from env)."""
    from serving.app import create_app
    from serving.server import run
    from serving.settings import ServeSettings

    settings = ServeSettings()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings.model_copy(update=overrides)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    run(create_app(settings), settings)


def generate(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output: .npz, .npy or .png (grid).")],
    n: Annotated[int, typer.Option("-n", "--count", min=1, help="How many digits.")] = 10,
    digit: Annotated[
        int | None,
        typer.Option(min=0, max=9, help="One digit for all images (default: cycle 0..9)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Seed (default: the server picks; printed).")
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Only digits the model's classifier reads as asked with this probability.",
        ),
    ] = None,
    url: Annotated[str, typer.Option(envvar="DCGAN_URL", help="The service's base URL.")] = (
        DEFAULT_URL
    ),
) -> None:
    """Fetch generated digits from a running service and save them."""
    if out.suffix not in SUFFIXES:
        raise typer.BadParameter(f"{out} must end in one of {', '.join(SUFFIXES)}", param_hint="-o")
    from serving import encoding

    with DigitsClient(url) as client:
        got = client.generate(n, digits=digit, seed=seed, min_confidence=min_confidence)
    if out.suffix == ".npz":
        data = encoding.npz_bytes(images=got.images, labels=got.labels)
    elif out.suffix == ".npy":
        data = encoding.npy_bytes(got.images)
    else:
        data = encoding.grid_png(got.images)
    write_atomic(out, data)
    typer.echo(f"{out}: {n} digits from {got.model} {got.version}, seed {got.seed}")
