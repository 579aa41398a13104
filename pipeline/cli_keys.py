"""``dcgan keys``: the Ed25519 key pair that signs published manifests.

The private key goes to whoever publishes (the trainer: DCGAN_REGISTRY_SIGNING_KEY), the public
key to every consumer (servers, `dcgan models pull`, the TorchServe archive builder:
DCGAN_REGISTRY_TRUSTED_KEYS); each as a file's path or as the key's one-line form. Errors are one
line and exit code 2 via pipeline.cli.main.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.registry.names import check_file_name
from models.registry.signing import ManifestSigner, generate_key_pair, raw_base64

keys_app = typer.Typer(help="Make and hand out the key pair that signs published model versions.")


@keys_app.command("generate")
def generate(
    out: Annotated[Path, typer.Option(help="Directory for the two key files.")] = Path("keys"),
    name: Annotated[str, typer.Option(help="File name stem: NAME.key and NAME.pub.")] = "publisher",
) -> None:
    """Write NAME.key (private, mode 0600: keep it secret) and NAME.pub (public) into OUT."""
    private_path, public_path = generate_key_pair(out, check_file_name(name))
    signer = ManifestSigner.from_file(private_path)
    typer.echo(f"private key {private_path} (mode 0600), public key {public_path}")
    typer.echo(f"key id {signer.key_id}; set")
    typer.echo(f"  publishers: DCGAN_REGISTRY_SIGNING_KEY={private_path}")
    typer.echo(f"  consumers:  DCGAN_REGISTRY_TRUSTED_KEYS={public_path}")
    typer.echo(f"or, as one-line values (a compose .env): dcgan keys env {private_path} >> .env")


@keys_app.command("env")
def env(
    private_key: Annotated[Path, typer.Argument(help="The private key file (NAME.key).")],
) -> None:
    """Print both settings with the keys' one-line forms, for an env file (the private key
    included: write it only where the trainer's secrets live)."""
    signer = ManifestSigner.from_file(private_key)
    typer.echo(f"DCGAN_REGISTRY_SIGNING_KEY={raw_base64(signer.private_key)}")
    typer.echo(f"DCGAN_REGISTRY_TRUSTED_KEYS={raw_base64(signer.private_key.public_key())}")
