"""A trained run published to the registry (local directory and a real S3 server), then pulled."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models import fileio
from models.classifier import ClassifierConfig, DigitClassifier
from models.contract import CLASSIFIER_NAME, labels_for_request, latent_for_seed
from models.registry import LocalStore, ModelRegistry, S3Store
from pipeline.data.loading import ImageDataset
from pipeline.export.classifier_file import export_classifier
from pipeline.publish import publish_run
from pipeline.train import train
from pipeline.train_config import TrainConfig
from tests.s3_server import S3TestServer
from tests.test_cli import dcgan


@pytest.fixture(scope="module")
def run_dir(mnist: ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(limit=256, epochs=1, batch_size=64, g_width=8, d_width=8)
    train(cfg, mnist, out, progress=False)
    (out / "evaluation.json").write_text(
        json.dumps({"accuracy": 0.5, "fd": 99.0, "gate": {"passed": False, "failures": ["x"]}})
    )
    return out


@pytest.fixture(params=["local", "s3"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    if request.param == "local":
        return ModelRegistry(LocalStore(tmp_path / "registry"), "cdcgan-mnist")
    server: S3TestServer = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return ModelRegistry(S3Store(bucket, server.settings()), "cdcgan-mnist")


def test_publish_then_pull_gives_a_servable_model(
    run_dir: Path, registry: ModelRegistry, tmp_path: Path
) -> None:
    refused = publish_run(run_dir, registry, version="v0", promote=True)
    assert not refused.promoted and "quality gate failed" in refused.reason
    with pytest.raises(Exception, match="production"):
        registry.get_alias("production")
    result = publish_run(run_dir, registry, version="v1", promote=True, force=True)
    assert result.promoted and result.reason == "forced"
    manifest = result.manifest
    expected = {"generator.onnx", "generator.torchscript.pt", "checkpoint.pt", "samples.png"}
    assert set(manifest.files) == expected
    assert manifest.metrics == {"accuracy": 0.5, "fd": 99.0}
    assert manifest.extra["quality_gate"]["passed"] is False
    assert manifest.signature["inputs"] == {"z": ["N", 100], "labels": ["N"]}
    assert manifest.training_config["epochs_trained"] == 1
    assert manifest.training_config["precision_used"]["precision"] in ("fp32", "bf16")
    assert manifest.dataset_md5["train-images-idx3-ubyte"] == "6bbc9ace898e44ae57da46a324031adb"
    parity = manifest.extra["export"]["parity"]
    assert max(parity["onnxruntime"]["max_abs_diff"].values()) <= 1e-4
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest.library_versions)
    assert registry.get_alias("production").version == "v1"

    local = registry.pull("production", tmp_path / "cache")
    ckpt = (run_dir / "checkpoint.pt").read_bytes()
    assert (
        hashlib.sha256((local / "checkpoint.pt").read_bytes()).digest()
        == hashlib.sha256(ckpt).digest()
    )
    session = ort.InferenceSession(
        str(local / "generator.onnx"), providers=["CPUExecutionProvider"]
    )
    z, labels = latent_for_seed(7, 4, 100), labels_for_request(4, 3)
    (images,) = session.run(None, {"z": z, "labels": labels})
    assert images.shape == (4, 1, 28, 28) and np.abs(images).max() <= 1


def test_publishing_the_same_version_twice_is_refused(
    run_dir: Path, registry: ModelRegistry
) -> None:
    publish_run(run_dir, registry, version="v1")
    before = registry.show("v1")  # publish_run returns a PublishResult; the registry is the truth
    with pytest.raises(Exception, match="v1"):
        publish_run(run_dir, registry, version="v1")
    assert registry.show("v1") == before


def test_a_publish_reads_the_checkpoint_once_and_hashes_each_file_once(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    # An evaluated run: its classifier beside the checkpoint, named by sha256 in the report.
    export_classifier(DigitClassifier(ClassifierConfig(width=4)), run / CLASSIFIER_NAME)
    report = json.loads((run / "evaluation.json").read_text())
    digest = hashlib.sha256((run / CLASSIFIER_NAME).read_bytes()).hexdigest()
    report["classifier"] = {"file": CLASSIFIER_NAME, "sha256": digest}
    (run / "evaluation.json").write_text(json.dumps(report))

    loads: list[Any] = []  # what torch.load read, the real torch.load still reading it
    real_load = torch.load

    def counting_load(f: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(f)
        return real_load(f, *args, **kwargs)

    hashed: list[str] = []  # the names of the files hashed, by the real sha256_file
    real_hash = fileio.sha256_file

    def counting_hash(path: Path) -> tuple[str, int]:
        hashed.append(Path(path).name)
        return real_hash(path)

    monkeypatch.setattr(torch, "load", counting_load)
    for name, module in list(sys.modules.items()):  # every module that imported it by name
        if name.split(".")[0] in ("models", "pipeline") and (
            getattr(module, "sha256_file", None) is real_hash
        ):
            monkeypatch.setattr(module, "sha256_file", counting_hash)
    registry = ModelRegistry(LocalStore(tmp_path / "registry"), "cdcgan-mnist")
    manifest = publish_run(run, registry, version="v1").manifest
    monkeypatch.undo()

    assert loads == [run / "checkpoint.pt"]
    assert sorted(hashed) == sorted(manifest.files)  # each file once, none twice
    assert CLASSIFIER_NAME in manifest.files and len(manifest.files) == 5
    # The sums carried along are the files' own: the pull verifies every one.
    local = registry.pull("v1", tmp_path / "cache")
    assert (local / CLASSIFIER_NAME).read_bytes() == (run / CLASSIFIER_NAME).read_bytes()


def test_export_and_publish_commands(run_dir: Path, tmp_path: Path) -> None:
    exported = dcgan("export", str(run_dir), "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    assert "parity onnxruntime batch 1024" in exported.stdout
    assert (tmp_path / "export" / "generator.onnx").is_file()
    env = {"DCGAN_REGISTRY_URI": str(tmp_path / "registry")}
    published = dcgan("publish", str(run_dir), "--version", "v7", "--promote", env=env)
    assert published.returncode == 0, published.stderr
    assert "published cdcgan-mnist v7" in published.stdout
    assert "NOT promoted: quality gate failed" in published.stdout
    forced = dcgan("publish", str(run_dir), "--version", "v8", "--promote", "--force", env=env)
    assert "promoted to production: forced" in forced.stdout
    again = dcgan("publish", str(run_dir), "--version", "v7", env=env)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1


def test_publish_refuses_a_run_on_another_dataset_than_the_models(
    run_dir: Path, tmp_path: Path
) -> None:
    """The flow's rule holds for `dcgan publish` too: one line, exit 2, nothing published."""
    from pipeline.data.loading import load_dataset

    env = {"DCGAN_REGISTRY_URI": str(tmp_path / "registry")}
    first = dcgan("publish", str(run_dir), "--version", "v1", "--promote", "--force", env=env)
    assert first.returncode == 0, first.stderr
    fashion = tmp_path / "fashion-run"
    cfg = TrainConfig(
        dataset="fashion-mnist", limit=256, epochs=1, batch_size=64, g_width=8, d_width=8
    )
    train(cfg, load_dataset("fashion-mnist"), fashion, progress=False)
    refused = dcgan("publish", str(fashion), "--version", "v2", "--promote", "--force", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "was trained on mnist, this run is on fashion-mnist" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    registry = ModelRegistry(LocalStore(tmp_path / "registry"), "cdcgan-mnist")
    assert [v.version for v in registry.list_versions()] == ["v1"]
    assert registry.get_alias("production").version == "v1"
    # Under a model of its own it publishes.
    own = dcgan("publish", str(fashion), "--version", "v2", env={
        **env, "DCGAN_REGISTRY_MODEL_NAME": "cdcgan-fashion-mnist"
    })  # fmt: skip
    assert own.returncode == 0 and "published cdcgan-fashion-mnist v2" in own.stdout, own.stderr
