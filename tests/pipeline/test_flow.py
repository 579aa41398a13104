"""The train-dcgan flow, end to end in Prefect's ephemeral mode, on a small real MNIST subset,
against the local store and the real S3 server, through `dcgan retrain`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.registry import LocalStore, ModelRegistry, S3Store
from models.registry.signing import ManifestVerifier, generate_key_pair
from tests.s3_server import S3TestServer
from tests.test_cli import dcgan

# Evaluates with the default classifier: trained once per session, under a lock (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("evaluation_classifier_file")

TINY = ["--limit", "512", "--epochs", "1", "--set", "batch_size=64"]
TINY += ["--set", "g_width=8", "--set", "d_width=8", "--eval-samples", "200", "--tstr-count", "0"]


def prefect_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    return env


def run_retrain(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`dcgan retrain` with exactly ``env`` (no PREFECT_API_URL: the flow runs in-process)."""
    exe = shutil.which("dcgan", path=str(Path(sys.executable).parent)) or "dcgan"
    done = subprocess.run(
        [exe, "retrain", *args], capture_output=True, text=True, env=env, timeout=600
    )
    return done.returncode, done.stdout, done.stderr


def test_flow_publishes_and_promotes_only_through_the_gate(tmp_path: Path) -> None:
    """A tiny run fails the gate and is published unpromoted; --force promotes the next; a run on
    another dataset is refused before training (it would be judged against MNIST digits)."""
    env = prefect_env(tmp_path)
    env["DCGAN_REGISTRY_URI"] = str(tmp_path / "registry")
    registry = ModelRegistry(LocalStore(tmp_path / "registry"), "cdcgan-mnist")

    code, out, err = run_retrain(env, *TINY)
    assert code == 0, err[-3000:]
    assert "Not promoted: published run-" in out and "quality gate failed" in out, out
    (first,) = registry.list_versions()
    manifest = registry.show(first.version)
    assert manifest.extra["promotion"]["promote"] is False
    assert "quality gate failed" in manifest.extra["promotion"]["reason"]
    assert set(manifest.files) >= {"generator.onnx", "generator.torchscript.pt", "checkpoint.pt"}
    with pytest.raises(Exception, match="production"):
        registry.get_alias("production")

    code, out, err = run_retrain(env, *TINY, "--force")
    assert code == 0, err[-3000:]
    assert "Completed: published and promoted run-" in out and "forced" in out, out
    assert len(registry.list_versions()) == 2
    promoted = registry.get_alias("production").version
    assert promoted != first.version
    assert registry.show(promoted).extra["promotion"]["reason"] == "forced"

    code, out, err = run_retrain(env, *TINY, "--set", "dataset=fashion-mnist", "--force")
    assert code == 1 and "was trained on mnist, this run is on fashion-mnist" in out + err, out
    assert "--model cdcgan-fashion-mnist" in out + err
    assert (
        len(registry.list_versions()) == 2 and registry.get_alias("production").version == promoted
    )


def test_with_model_the_flow_publishes_signed_under_that_name_on_s3(
    tmp_path: Path, s3_server: S3TestServer, s3_bucket: str
) -> None:
    """As deployed: the trainer signs what it publishes, consumers trust its public key; with
    --model the run is published and promoted under that model (one per dataset), beside the
    default model in the same bucket, which it leaves alone."""
    env = prefect_env(tmp_path)
    env.update(s3_server.env())
    env["DCGAN_REGISTRY_URI"] = f"s3://{s3_bucket}"
    private, public = generate_key_pair(tmp_path / "keys", "trainer")
    env["DCGAN_REGISTRY_SIGNING_KEY"] = str(private)
    verifier = ManifestVerifier.from_files([public])
    store = S3Store(s3_bucket, s3_server.settings())
    other = ModelRegistry(store, "cdcgan-mnist-tiny", verifier=verifier)

    code, out, err = run_retrain(env, *TINY, "--model", "cdcgan-mnist-tiny", "--force")
    assert code == 0, err[-3000:]
    assert "Completed: published and promoted run-" in out and "forced" in out, out
    promoted = other.show("production")  # its signature checked against the trusted key
    assert promoted.model_name == "cdcgan-mnist-tiny"
    assert promoted.extra["promotion"]["reason"] == "forced"
    assert ModelRegistry(store, "cdcgan-mnist").list_versions() == []
    code, out, err = run_retrain(env, *TINY, "--model", "../escape")
    assert code == 2 and "invalid model name" in err and len(err.strip().splitlines()) == 1, err


def test_a_killed_run_resumes_from_the_checkpoint_in_the_store(tmp_path: Path) -> None:
    env = prefect_env(tmp_path)
    env["DCGAN_REGISTRY_URI"] = str(tmp_path / "registry")
    env["DCGAN_FLOW_WORK_DIR"] = str(tmp_path / "work")
    args = ["--limit", "2048", "--epochs", "6", "--set", "batch_size=64", "--set", "g_width=8"]
    args += ["--set", "d_width=8", "--eval-samples", "200", "--tstr-count", "0"]
    exe = shutil.which("dcgan", path=str(Path(sys.executable).parent)) or "dcgan"
    checkpoints = tmp_path / "registry" / "cdcgan-mnist" / "checkpoints"
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(
            [exe, "retrain", *args], env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300
        while not list(checkpoints.glob("*/checkpoint.pt")):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint reached the store"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the crash: the flow process and its children
        first.wait(timeout=30)
    (crashed,) = [p.parent.name for p in checkpoints.glob("*/checkpoint.pt")]
    shutil.rmtree(tmp_path / "work", ignore_errors=True)  # the worker's disk is gone too

    code, out, err = run_retrain(env, *args, "--resume-run", crashed)
    assert code == 0, err[-3000:]
    assert f"of run {crashed}" in out and "resumed at epoch" in out, out
    epoch = int(out.split("resumed at epoch ")[1].split()[0])
    assert 1 <= epoch < 6, out
    registry = ModelRegistry(LocalStore(tmp_path / "registry"), "cdcgan-mnist")
    (version,) = registry.list_versions()
    assert registry.show(version.version).training_config["epochs_trained"] == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "-1"], "invalid --epochs"),
        (["--set", "g_loss=wasserstein"], "invalid --g-loss"),
        (["--set", "nonsense"], "not KEY=VALUE"),
    ],
)
def test_retrain_rejects_bad_options_in_one_line(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = dcgan("retrain", *args, env=prefect_env(tmp_path))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


DEPLOYED = {"data": "s3://datasets/mnist", "epochs": 10}


@pytest.mark.parametrize(
    "given,expected",
    [
        ({}, DEPLOYED),
        ({"epochs": 1, "g_width": 8}, {**DEPLOYED, "epochs": 1, "g_width": 8}),
        ({"dataset": "mnist"}, {**DEPLOYED, "dataset": "mnist"}),
        ({"data": "/data/mnist"}, {**DEPLOYED, "data": "/data/mnist"}),
        # Another dataset: the deployment's MNIST source must not feed it.
        ({"dataset": "fashion-mnist"}, {"epochs": 10, "dataset": "fashion-mnist"}),
        (
            {"dataset": "fashion-mnist", "data": "s3://datasets/fashion-mnist"},
            {"epochs": 10, "dataset": "fashion-mnist", "data": "s3://datasets/fashion-mnist"},
        ),
    ],
)
def test_a_server_run_merges_the_options_into_the_deployments_config(
    given: dict[str, object], expected: dict[str, object]
) -> None:
    from pipeline.cli_retrain import merged_config

    assert merged_config(DEPLOYED, given) == expected
    assert merged_config({}, given) == given


def test_the_flow_trains_and_publishes_a_users_own_data(tmp_path: Path) -> None:
    """`dcgan retrain --data PATH` with a name of the user's own: trained, evaluated on its
    held-out part and published with its content hash, class names and split in the manifest."""
    import numpy as np

    from pipeline.data.loading import load_dataset
    from pipeline.data.own import CONTENT_KEY, content_sha256

    mnist = load_dataset("mnist")
    images, labels = mnist.test_images[:400], mnist.test_labels[:400].astype(np.int64)
    np.savez(tmp_path / "mine.npz", images=images, labels=labels)
    env = prefect_env(tmp_path)
    env["DCGAN_REGISTRY_URI"] = str(tmp_path / "registry")
    args = [a for a in TINY if a not in ("--limit", "512")]
    code, out, err = run_retrain(
        env, *args, "--set", "dataset=my-digits", "--data", str(tmp_path / "mine.npz"),
        "--model", "cdcgan-my-digits", "--force",
    )  # fmt: skip
    assert code == 0 and "Completed: published and promoted" in out, err[-3000:]
    registry = ModelRegistry(LocalStore(tmp_path / "registry"), "cdcgan-my-digits")
    manifest = registry.show("production")
    assert manifest.dataset_md5 == {CONTENT_KEY: content_sha256(images, labels)}
    described = manifest.extra["dataset"]
    assert described["name"] == "my-digits" and described["holdout"]["format"] == "npz"
    assert described["class_names"] == [str(k) for k in range(10)]
    assert described["test_images"] == described["holdout"]["held_out_images"] > 0
    assert manifest.training_config["dataset"] == "my-digits"
