"""Signed manifests on both stores: a consumer with trusted keys uses only versions signed by one
of them, and refuses unsigned, tampered and foreign-signed ones before it uses any file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from models.contract import SIGNATURE_NAME
from models.registry import ModelRegistry
from models.registry.errors import SignatureError
from models.registry.signing import ManifestSigner, ManifestVerifier, generate_key_pair
from tests.models.conftest import MODEL, Backend, publish
from tests.test_cli import dcgan


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two publishers' key pairs: (private, public) files."""
    directory = tmp_path_factory.mktemp("keys")
    return {name: generate_key_pair(directory, name) for name in ("old", "new")}


def signing(backend: Backend, private: Path | None, *trusted: Path) -> ModelRegistry:
    return backend.registry(
        signer=ManifestSigner.from_file(private) if private else None,
        verifier=ManifestVerifier.from_files(trusted) if trusted else None,
    )


def test_key_files_are_private_and_never_overwritten(
    keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    private, public = keys["old"]
    assert private.stat().st_mode & 0o777 == 0o600 and public.stat().st_mode & 0o777 == 0o644
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    before = private.read_bytes()
    with pytest.raises(Exception, match="exists"):
        generate_key_pair(private.parent, "old")
    assert private.read_bytes() == before
    with pytest.raises(Exception, match="not an unencrypted PEM private key"):
        ManifestSigner.from_file(public)
    with pytest.raises(Exception, match="not a PEM public key"):
        ManifestVerifier.from_files([private])


def test_a_signed_version_is_verified_and_pulled_with_its_signature(
    backend: Backend, artifacts: dict[str, Path], keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    old_private, old_public = keys["old"]
    publisher = signing(backend, old_private)
    publish(publisher, {"generator.onnx": artifacts["generator.onnx"]}, "v1")
    assert f"{MODEL}/versions/v1/{SIGNATURE_NAME}" in backend.objects()
    consumer = signing(backend, None, old_public, keys["new"][1])  # rotation: both trusted
    directory = consumer.pull("v1", tmp_path / "cache")
    assert (directory / SIGNATURE_NAME).is_file()
    manifest, _ = consumer.verify_cached("v1", tmp_path / "cache")
    assert manifest.version == "v1"
    # The new key signs from now on; versions signed by either are used.
    publish(signing(backend, keys["new"][0]), {"samples.png": artifacts["samples.png"]}, "v2")
    assert consumer.show("v2").version == "v2"
    assert consumer.promote("v2").version == "v2"


def test_unsigned_tampered_and_foreign_versions_are_refused_before_any_file_is_used(
    backend: Backend, artifacts: dict[str, Path], keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    (old_private, old_public), (new_private, _) = keys["old"], keys["new"]
    files = {"generator.onnx": artifacts["generator.onnx"]}
    publish(signing(backend, None), files, "unsigned")
    publish(signing(backend, new_private), files, "foreign")
    signed = publish(signing(backend, old_private), files, "tampered")
    # Whoever can write the bucket edits the signed manifest (better metrics) and keeps the
    # signature: the sha256 list is what the signature protects.
    body = signed.model_dump(mode="json")
    body["metrics"]["accuracy"] = 0.999
    backend.store.put_bytes(f"{MODEL}/versions/tampered/manifest.json", json.dumps(body).encode())

    consumer = signing(backend, None, old_public)
    cache = tmp_path / "cache"
    expected = {
        "unsigned": "is not signed",
        "foreign": "not trusted here",
        "tampered": "does not match its manifest",
    }
    for version, message in expected.items():
        for use in (consumer.show, lambda v: consumer.pull(v, cache), consumer.promote):
            with pytest.raises(SignatureError, match=message):
                use(version)
    assert not cache.exists()  # nothing was downloaded
    # Listing still shows every version (to inspect or delete them); deleting needs no trust.
    assert {info.version for info in consumer.list_versions()} == set(expected)
    consumer.delete("unsigned")
    assert not consumer.exists("unsigned")


def test_a_cached_copy_is_verified_again(
    backend: Backend, artifacts: dict[str, Path], keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    private, public = keys["old"]
    publish(signing(backend, private), {"samples.png": artifacts["samples.png"]}, "v1")
    consumer = signing(backend, None, public)
    directory = consumer.pull("v1", tmp_path / "cache")
    (directory / SIGNATURE_NAME).unlink()
    with pytest.raises(SignatureError, match="is not signed"):
        consumer.verify_cached("v1", tmp_path / "cache")


def test_without_trusted_keys_versions_are_used_and_it_warns_once(
    backend: Backend, artifacts: dict[str, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    registry = signing(backend, None)
    publish(registry, {"samples.png": artifacts["samples.png"]}, "v1")
    with caplog.at_level(logging.WARNING, logger="models.registry"):
        assert registry.show("v1").version == "v1"  # reading is not using: no warning yet
        assert "registry.unverified" not in caplog.text
        for _ in range(3):
            assert registry.pull("v1", tmp_path / "cache").is_dir()
    warnings = [r for r in caplog.records if "registry.unverified" in r.getMessage()]
    assert len(warnings) == 1 and "DCGAN_REGISTRY_TRUSTED_KEYS" in warnings[0].getMessage()


def test_the_one_line_forms_of_dcgan_keys_env_are_the_same_keys(
    backend: Backend, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    made = dcgan("keys", "generate", "--out", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    private, public = tmp_path / "keys" / "publisher.key", tmp_path / "keys" / "publisher.pub"
    printed = dcgan("keys", "env", str(private))
    assert printed.returncode == 0, printed.stderr
    env = dict(line.split("=", 1) for line in printed.stdout.splitlines())
    assert set(env) == {"DCGAN_REGISTRY_SIGNING_KEY", "DCGAN_REGISTRY_TRUSTED_KEYS"}
    # Signed with the one-line private key, verified with the PEM public key, and the reverse.
    inline_signer = ManifestSigner.from_setting(env["DCGAN_REGISTRY_SIGNING_KEY"])
    registry = backend.registry(signer=inline_signer)
    publish(registry, {"samples.png": artifacts["samples.png"]}, "v1")
    for trusted in ([str(public)], [env["DCGAN_REGISTRY_TRUSTED_KEYS"]]):
        consumer = backend.registry(verifier=ManifestVerifier.from_setting(trusted))
        assert consumer.show("v1").version == "v1"
    assert inline_signer.key_id == ManifestSigner.from_setting(str(private)).key_id
    for setting in ("change-me-dcgan-keys-env", str(tmp_path / "missing.key")):
        with pytest.raises(Exception, match=r"placeholder|cannot read"):
            ManifestSigner.from_setting(setting)
