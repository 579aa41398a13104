"""The Python client and ``dcgan serve`` / ``dcgan generate``, against real servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.datasets.recipe import GENERATED_LOSS_WEIGHT
from models.registry import ModelRegistry
from pipeline.data.loading import ImageDataset
from serving.api.app import create_app
from serving.tools.client import DatasetError, DigitsClient, ServiceError
from tests.serving.conftest import Reference, settings
from tests.serving.live import serving, wait_ready
from tests.support.ports import free_port
from tests.test_cli import dcgan

BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked: ONNX Runtime serving must not need it")
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.fixture
def url(registry: ModelRegistry, tmp_path: Path) -> Iterator[str]:
    with serving(create_app(settings(), registry, cache_dir=tmp_path / "cache")) as base:
        yield base


def test_client_returns_arrays(url: str, reference: Reference) -> None:
    with DigitsClient(url) as client:
        assert client.ready()
        got = client.generate(30, digits=7, seed=42)
        assert (got.model, got.version, got.seed) == ("cdcgan-mnist", "v1", 42)
        assert got.labels.tolist() == [7] * 30
        np.testing.assert_array_equal(got.images, reference("v1", 42, 30, 7))
        drawn = client.generate(3)
        np.testing.assert_array_equal(drawn.images, reference("v1", drawn.seed, 3))
        balanced = client.balance({0: 10, 1: 4}, target=10, seed=1)
        assert np.bincount(balanced.labels, minlength=10).tolist() == [0, 6] + [10] * 8
        assert client.model()["version"] == "v1"
        with pytest.raises(ServiceError, match="422 from /generate: batch_size 5000 is above"):
            client.generate(5000)
    with DigitsClient(f"http://127.0.0.1:{free_port()}", retries=0) as offline:
        assert not offline.ready()
        with pytest.raises(ServiceError, match="cannot reach"):
            offline.generate(1)


def test_a_balance_answer_carries_what_training_on_it_needs(url: str, mnist: ImageDataset) -> None:
    counts = [10, 4, 10, 10, 10, 10, 10, 10, 10, 0]  # digit 1 rare, digit 9 missing
    picks = np.concatenate(
        [np.flatnonzero(mnist.test_labels == k)[:n] for k, n in enumerate(counts)]
    )
    real_images, real_labels = mnist.test_images[picks], mnist.test_labels[picks].astype(np.int64)
    with DigitsClient(url) as client:
        got = client.balance({k: n for k, n in enumerate(counts) if n}, seed=1)  # missing = 0

    assert got.real_counts == tuple(counts)
    assert np.bincount(got.labels, minlength=10).tolist() == [0, 6] + [0] * 7 + [10]
    assert got.synthetic.dtype == bool and got.synthetic.shape == (16,) and got.synthetic.all()
    np.testing.assert_array_equal(got.loss_weights, np.full(16, GENERATED_LOSS_WEIGHT))

    images, labels, weights, offsets = got.training_set(real_images, real_labels)
    np.testing.assert_array_equal(images, np.concatenate([real_images, got.images]))
    np.testing.assert_array_equal(labels, np.concatenate([real_labels, got.labels]))
    np.testing.assert_array_equal(weights, [1.0] * 84 + [GENERATED_LOSS_WEIGHT] * 16)
    # The logit-adjusted loss's offsets: the real prior (a missing class as half an image),
    # not the filled set's flat one.
    expected = np.log(np.maximum(np.asarray(counts, float), 0.5) / 84)
    np.testing.assert_allclose(offsets, expected)
    assert offsets.argmin() == 9 and offsets[1] < offsets[0]
    with pytest.raises(DatasetError, match="this balance filled"):
        got.training_set(real_images[1:], real_labels[1:])  # not the dataset it filled


def test_generate_command_writes_npz_npy_and_png(
    url: str, tmp_path: Path, reference: Reference
) -> None:
    out = tmp_path / "digits.npz"
    result = dcgan(
        "generate", "--digit", "3", "-n", "25", "--seed", "7", "-o", str(out), "--url", url
    )
    assert result.returncode == 0, result.stderr
    assert "25 digits from cdcgan-mnist v1, seed 7" in result.stdout
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["images"], reference("v1", 7, 25, 3))
        assert npz["labels"].tolist() == [3] * 25
    assert (
        dcgan(
            "generate", "-n", "4", "--seed", "1", "-o", str(tmp_path / "a.npy"), "--url", url
        ).returncode
        == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), reference("v1", 1, 4))
    assert (
        dcgan("generate", "-n", "20", "-o", str(tmp_path / "g.png"), "--url", url).returncode == 0
    )
    with Image.open(tmp_path / "g.png") as grid:
        assert grid.size == (302, 62)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "5000"], "batch_size 5000 is above this server's limit 1024"),
        (["--digit", "12"], "--digit"),
        (["-n", "0"], "--count"),
        (["-o", "out.gif"], "must end in one of .npz, .npy, .png"),
    ],
)
def test_generate_command_errors_are_one_line(
    url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "x.npz")]
    result = dcgan("generate", *args, "--url", url, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.glob("*.np*"))


def test_generate_command_without_a_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = dcgan("generate", "-o", str(tmp_path / "x.npz"), "--url", url)
    assert result.returncode == 2 and "cannot reach" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_command_runs_without_torch(
    registry_dir: Path, tmp_path: Path, reference: Reference
) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TORCH)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(blocker),
        "DCGAN_REGISTRY_URI": str(registry_dir),
        "DCGAN_REGISTRY_CACHE_DIR": str(tmp_path / "cache"),
        "DCGAN_SERVE_PORT": str(port),
        "DCGAN_SERVE_POLL_INTERVAL_S": "0",
    }
    log = tmp_path / "serve.log"
    dcgan_exe = Path(sys.executable).parent / "dcgan"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(dcgan_exe), "serve"], env=env, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 60)
        with DigitsClient(url) as client:
            got = client.generate(16, digits=5, seed=3)
        np.testing.assert_array_equal(got.images, reference("v1", 3, 16, 5))
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    text = log.read_text()
    assert code in (0, -signal.SIGTERM), text  # uvicorn re-raises SIGTERM after a clean stop
    assert "serving.model_loaded" in text and "torch is blocked" not in text
