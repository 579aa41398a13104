"""``dcgan models ...``: the registry from the command line (list, show, promote, rollback, ...).

The registry is chosen by DCGAN_REGISTRY_URI (a directory, default ./registry, or
s3://bucket[/prefix] with DCGAN_S3_*); errors are one line and exit code 2 via pipeline.cli.main.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from models.contract import PRODUCTION
from models.registry import ModelRegistry
from models.registry.settings import open_registry, registry_settings
from pipeline.errors import UserError

models_app = typer.Typer(help="List, inspect, promote, roll back, pull and delete model versions.")


def _registry() -> ModelRegistry:
    return open_registry()


def _metric(metrics: dict[str, Any], key: str, percent: bool = False) -> str:
    value = metrics.get(key)
    if not isinstance(value, int | float):
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.2f}"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


@models_app.command("list")
def list_versions() -> None:
    """Every published version, oldest first, with its aliases and key metrics."""
    rows = _registry().list_versions()
    table = Table(title=f"models in {registry_settings().uri}")
    for column in ("version", "created (UTC)", "aliases", "accuracy", "FD", "TSTR", "size"):
        table.add_column(
            column, justify="right" if column in ("accuracy", "FD", "TSTR", "size") else "left"
        )
    for row in rows:
        table.add_row(
            row.version,
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            ", ".join(sorted(row.aliases)) or "-",
            _metric(row.metrics, "accuracy", percent=True),
            _metric(row.metrics, "fd"),
            _metric(row.metrics, "tstr_accuracy", percent=True),
            _size(row.size),
        )
    console = Console()
    console.width = max(console.width, 120)  # version ids must stay whole to be copied
    console.print(table if rows else "no versions published yet")


@models_app.command()
def show(ref: Annotated[str, typer.Argument(help="Version id or alias.")]) -> None:
    """The manifest of a version (files with sha256, signature, metrics, config) as JSON."""
    typer.echo(_registry().show(ref).to_json().decode().rstrip())


@models_app.command()
def promote(
    ref: Annotated[str, typer.Argument(help="Version id or alias to promote.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = PRODUCTION,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback", help="Allow a version older than the one the alias points to now."
        ),
    ] = False,
    unverified: Annotated[
        bool,
        typer.Option(
            "--unverified",
            help="Promote without trusted keys: only where no server checks signatures either.",
        ),
    ] = False,
) -> None:
    """Point an alias (default: production) at a version; the previous target is remembered.

    The version's signature is verified with the trusted keys (DCGAN_REGISTRY_TRUSTED_KEYS), so an
    alias never points at a version the servers would refuse; without keys it refuses unless
    --unverified. An older version than the current one needs --rollback.
    """
    registry = _registry()
    if registry.verifier is None and not unverified:
        raise UserError(
            "no trusted keys (DCGAN_REGISTRY_TRUSTED_KEYS): the signature of the version cannot "
            "be checked, and servers that check signatures refuse an unsigned or foreign-signed "
            "one; set the publisher's public key (`dcgan keys env`), or pass --unverified where "
            "no server checks signatures"
        )
    record = registry.promote(ref, alias, allow_older=rollback)
    typer.echo(f"{alias} -> {record.version} (previous: {record.previous or 'none'})")
    if registry.verifier is None:
        typer.echo(f"warning: the signature of {record.version} was not checked", err=True)


@models_app.command()
def rollback(
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = PRODUCTION,
) -> None:
    """Return an alias to its previous version (verified first, with trusted keys)."""
    record = _registry().rollback(alias)
    typer.echo(f"{alias} -> {record.version} (previous: {record.previous or 'none'})")


@models_app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="Version id or alias.")],
    cache_dir: Annotated[
        Path | None, typer.Option(help="Local cache (default from settings).")
    ] = None,
    file: Annotated[
        list[str] | None,
        typer.Option("--file", help="Only this file of the version (repeatable); default: all."),
    ] = None,
) -> None:
    """Download a version into the local cache, verifying every file's sha256."""
    target = cache_dir or registry_settings().cache_dir.expanduser()
    typer.echo(str(_registry().pull(ref, target, files=file or None)))


@models_app.command()
def delete(version: Annotated[str, typer.Argument(help="Version id (not an alias).")]) -> None:
    """Delete a version that no alias points to."""
    _registry().delete(version)
    typer.echo(f"deleted {version}")


@models_app.command()
def cleanup() -> None:
    """Remove leftovers of interrupted publishes (no manifest, older than the grace period)."""
    removed = _registry().cleanup()
    typer.echo(json.dumps({"removed": removed}))
