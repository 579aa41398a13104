"""Signed manifests: only the holder of a publishing key decides what a consumer uses.

A version's manifest lists the sha256 of every file, so a signature over the manifest's exact
bytes covers the whole version. Publishing writes the signature (``manifest.sig``, a small JSON
document) right before the manifest, so a signed version is never visible unsigned. A consumer
configured with trusted public keys (several, for rotation) verifies the signature before it
uses the manifest or any file it lists; a consumer with none configured uses versions unverified
and says so once.

Keys are Ed25519 (the ``cryptography`` library): the private key in a PKCS#8 PEM file readable
by its owner only, the public key in a SubjectPublicKeyInfo PEM file. Where a file is awkward to
hand to a process (a compose ``.env``, a Kubernetes Secret as an environment variable), a setting
may hold the key itself instead: the base64 of its 32 raw bytes, as ``dcgan keys generate``
prints it. A key is named by its id, the first 16 hex digits of the sha256 of its raw public
bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from models.registry.errors import RegistryError, SignatureError
from models.secrets import is_placeholder

log = logging.getLogger("models.registry.signing")

ALGORITHM = "ed25519"
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>.key`` (private, mode 0600) and ``<name>.pub`` into ``directory``; an
    existing file is never overwritten (a lost private key cannot be recovered)."""
    private_path = directory / f"{name}{PRIVATE_SUFFIX}"
    public_path = directory / f"{name}{PUBLIC_SUFFIX}"
    for path in (private_path, public_path):
        if path.exists():
            raise RegistryError(f"{path} exists: choose another --name or directory")
    directory.mkdir(parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(private_path, flags, 0o600), "wb") as fh:
        fh.write(private_pem)
    with os.fdopen(os.open(public_path, flags, 0o644), "wb") as fh:
        fh.write(public_pem)
    return private_path, public_path


def raw_base64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The one-line form of a key: base64 of its 32 raw bytes."""
    if isinstance(key, Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    else:
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _inline_raw(value: str, setting: str) -> bytes | None:
    """The 32 raw key bytes when ``value`` is a key in its one-line form, else None (a path)."""
    if is_placeholder(value):
        raise RegistryError(
            f"{setting} is a placeholder: `dcgan keys generate` makes a key pair and "
            "`dcgan keys env KEY_FILE` prints both settings"
        )
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise RegistryError(
            f"cannot read the {what} {path}: {exc.strerror} (give a PEM file or the key's "
            "one-line form from `dcgan keys generate`)"
        ) from exc


@dataclass(frozen=True)
class ManifestSigner:
    """Signs manifests with one private key."""

    private_key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    @classmethod
    def from_setting(cls, value: str) -> ManifestSigner:
        """A PEM file's path, or the private key's one-line form."""
        raw = _inline_raw(value, "DCGAN_REGISTRY_SIGNING_KEY")
        if raw is not None:
            return cls(Ed25519PrivateKey.from_private_bytes(raw))
        return cls.from_file(Path(value))

    @classmethod
    def from_file(cls, path: Path) -> ManifestSigner:
        data = _read_key_file(path, "signing key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise RegistryError(f"{path} is not an Ed25519 key (`dcgan keys generate` makes one)")
        return cls(key)

    def sign(self, manifest_bytes: bytes) -> bytes:
        """The detached signature document of these exact manifest bytes."""
        body = {
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.private_key.sign(manifest_bytes)).decode(),
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class ManifestVerifier:
    """Verifies manifests against the trusted public keys, by key id."""

    keys: dict[str, Ed25519PublicKey]

    @classmethod
    def from_setting(cls, values: Iterable[str]) -> ManifestVerifier:
        """Each a PEM file's path or a public key's one-line form."""
        keys: dict[str, Ed25519PublicKey] = {}
        paths: list[Path] = []
        for value in values:
            raw = _inline_raw(value, "DCGAN_REGISTRY_TRUSTED_KEYS")
            if raw is None:
                paths.append(Path(value))
            else:
                key = Ed25519PublicKey.from_public_bytes(raw)
                keys[key_id(key)] = key
        if paths:
            keys.update(cls.from_files(paths).keys)
        if not keys:
            raise RegistryError("no trusted public key given")
        return cls(keys)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> ManifestVerifier:
        keys: dict[str, Ed25519PublicKey] = {}
        for path in paths:
            data = _read_key_file(path, "trusted public key")
            try:
                key = serialization.load_pem_public_key(data)
            except (ValueError, TypeError) as exc:
                raise RegistryError(f"{path} is not a PEM public key: {exc}") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise RegistryError(f"{path} is not an Ed25519 public key")
            keys[key_id(key)] = key
        if not keys:
            raise RegistryError("no trusted public key given")
        return cls(keys)

    def verify(self, manifest_bytes: bytes, signature: bytes | None, origin: str) -> str:
        """The id of the key that signed ``manifest_bytes``; SignatureError when the signature is
        missing, unreadable, by an untrusted key or does not match."""
        if signature is None:
            raise SignatureError(
                f"{origin} is not signed: publish it again with DCGAN_REGISTRY_SIGNING_KEY set"
            )
        try:
            body = json.loads(signature)
            algorithm, signer, value = body["algorithm"], body["key_id"], body["signature"]
            raw = base64.b64decode(value, validate=True)
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            raise SignatureError(f"the signature of {origin} is unreadable ({exc})") from exc
        if algorithm != ALGORITHM:
            raise SignatureError(f"the signature of {origin} uses {algorithm!r}, not {ALGORITHM}")
        key = self.keys.get(signer) if isinstance(signer, str) else None
        if key is None or not isinstance(signer, str):
            raise SignatureError(
                f"{origin} is signed by key {signer!r}, which is not trusted here (trusted: "
                f"{', '.join(sorted(self.keys))}; DCGAN_REGISTRY_TRUSTED_KEYS)"
            )
        try:
            key.verify(raw, manifest_bytes)
        except InvalidSignature:
            raise SignatureError(
                f"the signature of {origin} does not match its manifest: the manifest was "
                "changed after signing; do not use this version"
            ) from None
        return signer
