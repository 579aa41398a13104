"""``dcgan models ...`` as users run it, against a real local registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.registry import LocalStore, ModelRegistry
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

    assert dcgan("models", "promote", "v1", env=env).returncode == 0
    promoted = dcgan("models", "promote", "v2", env=env)
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
    dcgan("models", "promote", "v2", env=env)
    assert dcgan("models", "delete", "v1", env=env).returncode == 0
    assert not reg.exists("v1")


@pytest.mark.parametrize(
    "args,message",
    [
        (["models", "show", "v9"], "v9"),
        (["models", "promote", "nope"], "nope"),
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
