"""``dcgan models ...`` as users run it, against a real local registry and a real S3 server
(SeaweedFS, tests/s3_server.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.contract import MANIFEST_NAME
from models.registry import LocalStore, ModelRegistry, ObjectStore, S3Store
from models.registry.signing import ManifestSigner, generate_key_pair
from tests.s3_server import S3TestServer
from tests.test_cli import dcgan


@pytest.fixture
def registry(tmp_path: Path) -> tuple[ModelRegistry, dict[str, str]]:
    root = tmp_path / "registry"
    reg = ModelRegistry(LocalStore(root), "cdcgan-mnist")
    for i, acc in enumerate((0.95, 0.99)):
        artifact = tmp_path / f"generator-{i}.onnx"
        artifact.write_bytes(bytes([i]) * 4096)
        reg.publish(
            {"generator.onnx": artifact}, version=f"v{i + 1}", metrics={"accuracy": acc, "fd": 9.5}
        )
    env = {"DCGAN_REGISTRY_URI": str(root), "DCGAN_REGISTRY_MODEL_NAME": "cdcgan-mnist"}
    return reg, env


def test_list_show_promote_rollback_pull_delete(
    registry: tuple[ModelRegistry, dict[str, str]], tmp_path: Path
) -> None:
    reg, env = registry
    listing = dcgan("models", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "v1" in listing.stdout and "v2" in listing.stdout and "99.00%" in listing.stdout

    shown = dcgan("models", "show", "latest", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["version"] == "v2"

    assert dcgan("models", "promote", "v1", "--unverified", env=env).returncode == 0
    promoted = dcgan("models", "promote", "v2", "--unverified", env=env)
    assert "production -> v2 (previous: v1)" in promoted.stdout
    assert reg.get_alias("production").version == "v2"
    back = dcgan("models", "rollback", env=env)
    assert back.returncode == 0 and reg.get_alias("production").version == "v1"

    pulled = dcgan("models", "pull", "production", "--cache-dir", str(tmp_path / "cache"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert (Path(pulled.stdout.strip()) / "generator.onnx").read_bytes() == bytes([0]) * 4096

    refused = dcgan("models", "delete", "v1", env=env)
    assert (
        refused.returncode == 2 and "v1" in refused.stderr and len(refused.stderr.splitlines()) == 1
    )
    assert reg.exists("v1")
    dcgan("models", "promote", "v2", "--unverified", env=env)
    assert dcgan("models", "delete", "v1", env=env).returncode == 0
    assert not reg.exists("v1")


@pytest.mark.parametrize(
    "args,message",
    [
        (["models", "show", "v9"], "v9"),
        (["models", "promote", "nope", "--unverified"], "nope"),
        (["models", "pull", "v1", "--file", "checkpoint.pt"], "has no file 'checkpoint.pt'"),
        (["models", "pull", "v1", "--file", "../outside"], "invalid file name '../outside'"),
    ],
)
def test_unknown_versions_exit_2_with_one_line(
    registry: tuple[ModelRegistry, dict[str, str]], args: list[str], message: str
) -> None:
    _, env = registry
    result = dcgan(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


# --- promotion: signatures and direction --------------------------------------------------------

MODEL = "cdcgan-mnist"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """The publisher's key pair and a stranger's: (private, public) files."""
    directory = tmp_path_factory.mktemp("keys")
    return {name: generate_key_pair(directory, name) for name in ("publisher", "stranger")}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ObjectStore, dict[str, str]]:
    """A real store, and the environment that points `dcgan models` at it (no trusted keys)."""
    env = {"DCGAN_REGISTRY_MODEL_NAME": MODEL, "DCGAN_REGISTRY_TRUSTED_KEYS": ""}
    if request.param == "local":
        root = tmp_path / "registry"
        return LocalStore(root), {**env, "DCGAN_REGISTRY_URI": str(root)}
    server: S3TestServer = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    uri = f"s3://{bucket}"
    return S3Store(bucket, server.settings()), {**env, **server.env(), "DCGAN_REGISTRY_URI": uri}


def publish(store: ObjectStore, tmp_path: Path, version: str, signer: Path | None) -> None:
    artifact = tmp_path / f"{version}.onnx"
    artifact.write_bytes(version.encode() * 1024)
    key = ManifestSigner.from_file(signer) if signer else None
    ModelRegistry(store, MODEL, signer=key).publish({"generator.onnx": artifact}, version=version)


def production(store: ObjectStore) -> Any:
    aliases = ModelRegistry(store, MODEL).aliases()
    return aliases["production"].version if "production" in aliases else None


def refused(result: Any, *words: str) -> None:
    """Exit 2 with one line naming ``words``."""
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and all(word in line for word in words), line


def test_promote_without_trusted_keys_refuses_unless_told_no_server_checks(
    store: tuple[ObjectStore, dict[str, str]], tmp_path: Path
) -> None:
    objects, env = store
    publish(objects, tmp_path, "v1", None)
    refused(
        dcgan("models", "promote", "v1", env=env), "DCGAN_REGISTRY_TRUSTED_KEYS", "--unverified"
    )
    assert production(objects) is None
    promoted = dcgan("models", "promote", "v1", "--unverified", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert "production -> v1" in promoted.stdout and "warning: " in promoted.stderr
    assert production(objects) == "v1"


def test_promote_with_trusted_keys_refuses_unsigned_foreign_and_tampered_versions(
    store: tuple[ObjectStore, dict[str, str]], keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    objects, env = store
    env = {**env, "DCGAN_REGISTRY_TRUSTED_KEYS": str(keys["publisher"][1])}
    publish(objects, tmp_path, "v1", keys["publisher"][0])
    publish(objects, tmp_path, "v2", None)
    publish(objects, tmp_path, "v3", keys["stranger"][0])
    publish(objects, tmp_path, "v4", keys["publisher"][0])
    manifest_key = f"{MODEL}/versions/v4/{MANIFEST_NAME}"
    body = json.loads(objects.read(manifest_key))
    body["metrics"] = {"accuracy": 1.0}  # edited after signing
    objects.put_bytes(manifest_key, json.dumps(body).encode())

    assert dcgan("models", "promote", "v1", env=env).returncode == 0
    for version, words in (
        ("v2", ("v2", "is not signed")),
        ("v3", ("v3", "not trusted")),
        ("v4", ("v4", "does not match its manifest")),
    ):
        refused(dcgan("models", "promote", version, env=env), *words)
        refused(dcgan("models", "promote", version, "--unverified", env=env), *words)
        assert production(objects) == "v1", version


def test_promote_moves_production_back_only_when_asked(
    store: tuple[ObjectStore, dict[str, str]], keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    objects, env = store
    env = {**env, "DCGAN_REGISTRY_TRUSTED_KEYS": str(keys["publisher"][1])}
    for version in ("v1", "v2", "v3"):
        publish(objects, tmp_path, version, keys["publisher"][0])
    assert dcgan("models", "promote", "v3", env=env).returncode == 0
    refused(dcgan("models", "promote", "v1", env=env), "v1", "older than v3", "--rollback")
    assert production(objects) == "v3"
    back = dcgan("models", "promote", "v2", "--rollback", env=env)
    assert back.returncode == 0 and "production -> v2 (previous: v3)" in back.stdout, back.stderr
    assert dcgan("models", "promote", "v3", env=env).returncode == 0  # forward again
    undo = dcgan("models", "rollback", env=env)  # to its previous version, as before
    assert undo.returncode == 0 and "production -> v2 (previous: v3)" in undo.stdout, undo.stderr
    assert production(objects) == "v2"
