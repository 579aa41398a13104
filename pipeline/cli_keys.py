"""``dcgan keys generate``: the Ed25519 key pair that signs published manifests.

The private key goes to whoever publishes (the trainer: DCGAN_REGISTRY_SIGNING_KEY); the public
key to every consumer (servers, `dcgan models pull`, the TorchServe archive builder:
DCGAN_REGISTRY_TRUSTED_KEYS). Errors are one line and exit code 2 via pipeline.cli.main.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.registry.names import check_file_name
from models.registry.signing import ManifestVerifier, generate_key_pair

keys_app = typer.Typer(help="Make the key pair that signs published model versions.")


@keys_app.command("generate")
def generate(
    out: Annotated[Path, typer.Option(help="Directory for the two key files.")] = Path("keys"),
    name: Annotated[str, typer.Option(help="File name stem: NAME.key and NAME.pub.")] = "publisher",
) -> None:
    """Write NAME.key (private, mode 0600: keep it secret) and NAME.pub (public) into OUT."""
    private_path, public_path = generate_key_pair(out, check_file_name(name))
    (signer_id,) = ManifestVerifier.from_files([public_path]).keys
    typer.echo(f"private key {private_path} (mode 0600), public key {public_path}, id {signer_id}")
    typer.echo(f"publishers:  DCGAN_REGISTRY_SIGNING_KEY={private_path}")
    typer.echo(f"consumers:   DCGAN_REGISTRY_TRUSTED_KEYS={public_path}")
