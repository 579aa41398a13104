"""``dcgan torchserve ...``: package registry versions for TorchServe.

Registered on the main CLI as ``app.add_typer(torchserve_app, name="torchserve")``; errors are
``UserFacingError`` and end as one line with exit code 2 through ``pipeline.cli.main``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.contract import PRODUCTION
from models.registry.settings import open_registry, registry_settings
from serving.torchserve.archive import build_archive

torchserve_app = typer.Typer(
    help="Package model versions for the TorchServe backend.", no_args_is_help=True
)


@torchserve_app.command()
def archive(
    model_store: Annotated[
        Path, typer.Option(help="TorchServe model store directory: the .mar is written here.")
    ],
    ref: Annotated[str, typer.Argument(help="Version id or alias to package.")] = PRODUCTION,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Local registry cache (default from settings).")
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Largest batch_size a request may ask for (default 1024)."),
    ] = None,
) -> None:
    """Build <model>-<version>.mar from a registry version (sha256-verified); print its path."""
    settings = registry_settings()
    path = build_archive(
        open_registry(settings),
        ref,
        model_store,
        cache_dir=cache_dir or settings.cache_dir.expanduser(),
        max_batch_size=max_batch_size,
    )
    typer.echo(str(path))
