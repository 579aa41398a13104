"""``dcgan serve``, ``dcgan generate`` and ``dcgan balance``: run the API, fetch digits from it
into a file, and fill a dataset's rare classes."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from models.fileio import write_atomic
from serving.tools.client import DEFAULT_URL, DigitsClient

SUFFIXES = (".npz", ".npy", ".png")


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (DCGAN_SERVE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (DCGAN_SERVE_PORT).")] = None,
) -> None:
    """Serve /generate from the registry's production model (ONNX Runtime; settings from env)."""
    from serving.api.app import create_app
    from serving.api.server import run
    from serving.api.settings import serve_settings

    settings = serve_settings()
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
    model: Annotated[
        str | None, typer.Option(help="Which served model (default: the server's first).")
    ] = None,
) -> None:
    """Fetch generated digits from a running service and save them."""
    if out.suffix not in SUFFIXES:
        raise typer.BadParameter(f"{out} must end in one of {', '.join(SUFFIXES)}", param_hint="-o")
    from serving.core import encoding

    with DigitsClient(url) as client:
        got = client.generate(
            n, digits=digit, seed=seed, min_confidence=min_confidence, model=model
        )
    if out.suffix == ".npz":
        data = encoding.npz_bytes(images=got.images, labels=got.labels)
    elif out.suffix == ".npy":
        data = encoding.npy_bytes(got.images)
    else:
        data = encoding.grid_png(got.images)
    write_atomic(out, data)
    typer.echo(f"{out}: {n} digits from {got.model} {got.version}, seed {got.seed}")


def balance(
    path: Annotated[
        Path,
        typer.Argument(
            help="ImageFolder or save_to_disk directory, .npz, .parquet, or *images-idx3-ubyte "
            "file. Untrusted: links inside it are refused, never followed."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="The balanced copy (new). Default: PATH-balanced."),
    ] = None,
    target: Annotated[
        int | None, typer.Option(min=1, help="Images per class (default: the largest class).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Seed (default: drawn; printed and recorded).")
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Only digits the version's classifier reads as asked (with or without --url).",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(envvar="DCGAN_URL", help="A running service; default: the registry model."),
    ] = None,
    alias: Annotated[
        str, typer.Option(help="The registry alias to use without a service.")
    ] = "production",
    model: Annotated[
        str | None,
        typer.Option(
            help="The model: served (with --url; default its first) or in the registry "
            "(default DCGAN_REGISTRY_MODEL_NAME)."
        ),
    ] = None,
    in_place: Annotated[
        bool,
        typer.Option("--in-place", help="Add to the ImageFolder itself instead of writing a copy."),
    ] = False,
) -> None:
    """Fill PATH's rare classes with generated images, written in PATH's own format as a copy."""
    from models.datasets.files import refused, shown
    from serving.tools.dataset_balance import RegistrySource, ServiceSource, balance_dataset

    if in_place and out is not None:
        raise typer.BadParameter("give --out or --in-place, not both", param_hint="--in-place")
    if out is None:
        named = Path(os.path.abspath(path))  # "." or "digits/" too; beside PATH as typed
        if not named.name:
            raise refused(f"{path}: give --out (the default is a sibling of PATH)")
        out = named.with_name(f"{named.name.removesuffix('.npz')}-balanced")
    with contextlib.ExitStack() as stack:
        source = (
            ServiceSource(url, model)
            if url
            else stack.enter_context(RegistrySource(alias, model=model))
        )
        result = balance_dataset(
            path,
            out,
            source,
            target=target,
            seed=seed,
            min_confidence=min_confidence,
            in_place=in_place,
            progress=sys.stderr.isatty(),
        )
    where = shown(path)
    if result.finished_interrupted:
        typer.echo(f"{where}: finished the interrupted balance found there first")
    counts = ", ".join(f"{k}: {n}" for k, n in enumerate(result.before))
    typer.echo(f"{where} ({result.source.format}): {counts}")
    if result.out is None or result.provenance is None:
        typer.echo("nothing missing: nothing written")
        return
    p = result.provenance
    typer.echo(
        f"{shown(result.out)}: added {sum(result.added)} images from {shown(p.model)} "
        f"{shown(p.version)} (seed {p.seed}), "
        f"{max(result.before) if target is None else target} per class"
    )
