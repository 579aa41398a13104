"""The ``dcgan`` command as users run it: a real process, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dcgan(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("dcgan", path=str(Path(sys.executable).parent)) or "dcgan"
    return subprocess.run(
        [exe, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--epochs", "-1"], "invalid --epochs"),
        (["train", "--epochs", "abc"], "--epochs"),
        (["train", "--g-loss", "wasserstein"], "invalid --g-loss"),
        (["train", "--arch", "resnet"], "invalid --arch"),
        (["train", "--real-label", "0"], "invalid --real-label"),
        (["train", "--batch-size", "1"], "invalid --batch-size"),
        (["train", "--ema-decay", "1"], "invalid --ema-decay"),
        (["train", "--dataset", "cifar10"], "unknown dataset 'cifar10'"),
        (
            ["train", "--data", "/nonexistent/mnist"],
            "data directory /nonexistent/mnist does not exist",
        ),
        (["train", "--device", "tpu"], "unknown --device"),
        (["train", "--no-such-option"], "No such option"),
        (
            ["evaluate", "/nonexistent/checkpoint.pt"],
            "checkpoint /nonexistent/checkpoint.pt does not exist",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    assert_one_line_error(dcgan(*args), message)


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_precision_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    result = dcgan(
        "train", "--out", str(tmp_path / "run"), "--limit", "64", "--epochs", "1",
        env={"DCGAN_PRECISION": "fp8"},
    )  # fmt: skip
    assert_one_line_error(result, "invalid setting precision (a DCGAN_* environment variable")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_corrupt_dataset_exits_2_naming_file_and_md5(tmp_path: Path) -> None:
    data = tmp_path / "mnist"
    shutil.copytree(REPO / "data" / "mnist", data)
    target = next(p for p in data.iterdir() if p.name.startswith("t10k-labels"))
    target.write_bytes(target.read_bytes()[:-100])
    result = dcgan("train", "--data", str(data), "--limit", "64", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert (
        "t10k-labels-idx1-ubyte" in result.stderr
        and "27ae3e4e09519cfbb04c329615203637" in result.stderr
    )
    assert "trained" not in result.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("evaluation_classifier_file")  # evaluates with it
def test_train_then_evaluate_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = dcgan(
        "train",
        "--out",
        str(out),
        "--limit",
        "256",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--g-width",
        "8",
        "--d-width",
        "8",
        "--no-progress",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "checkpoint:" in result.stdout
    assert (out / "checkpoint.pt").is_file() and (out / "samples.png").is_file()
    again = dcgan(
        "train",
        "--out",
        str(out),
        "--resume",
        str(out),
        "--epochs",
        "2",
        "--no-progress",
        "--quiet",
    )
    assert again.returncode == 0, again.stderr
    assert "to epoch 2" in again.stdout
    report = dcgan(
        "evaluate",
        str(out),
        "--samples",
        "500",
        "--tstr-count",
        "1000",
        "--tstr-epochs",
        "1",
        "--no-progress",
    )
    assert report.returncode == 0, report.stderr
    assert "conditional accuracy" in report.stdout and "quality gate: FAIL" in report.stdout
    payload = json.loads((out / "evaluation.json").read_text())
    assert payload["epoch"] == 2 and payload["num_samples"] == 500 and payload["tstr_count"] == 1000
    assert 0 <= payload["accuracy"] <= 1 and payload["gate"]["passed"] is False
    assert payload["boundary"]["same_data"] and payload["boundary"]["scored_on"] == "test split"
    assert "a 256-image subset of mnist's training split" in payload["boundary"]["statement"]


def test_train_with_run_id_resumes_on_another_disk(tmp_path: Path) -> None:
    env = {"DCGAN_REGISTRY_URI": str(tmp_path / "registry")}
    common = ["--limit", "256", "--batch-size", "64", "--g-width", "8", "--d-width", "8"]
    first = dcgan(
        "train",
        "--out",
        str(tmp_path / "a"),
        "--epochs",
        "1",
        "--run-id",
        "r1",
        "--no-progress",
        "--quiet",
        *common,
        env=env,
    )
    assert first.returncode == 0, first.stderr
    assert (
        tmp_path / "registry" / "cdcgan-mnist" / "checkpoints" / "r1" / "checkpoint.pt"
    ).is_file()
    second = dcgan(
        "train",
        "--out",
        str(tmp_path / "b"),
        "--epochs",
        "2",
        "--run-id",
        "r1",
        "--no-progress",
        "--quiet",
        *common,
        env=env,
    )
    assert second.returncode == 0, second.stderr
    assert "to epoch 2" in second.stdout
    history = json.loads((tmp_path / "b" / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
