"""The benchmarks, run end to end in a tiny mode so that they keep working.

Tiny trained runs (256 digits, one or two epochs, narrow networks), one repeat. The registry
benchmark runs without its cProfile pass and end-to-end ``publish_run``; its own SeaweedFS server
is started and must be stopped.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from benchmarks import recipes, registry_speed
from pipeline.data.loading import load_dataset
from pipeline.train import train
from pipeline.train_config import TrainConfig


def test_registry_speed_benchmark_runs_and_stops_its_server(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = TrainConfig(limit=256, epochs=1, batch_size=64, g_width=8, d_width=8)
    train(cfg, load_dataset("mnist"), run, progress=False)

    out = tmp_path / "results"
    args = ["--run", str(run), "--repeats", "1", "--out", str(out), "--tag", "smoke"]
    path = registry_speed.main([*args, "--no-end-to-end", "--no-profile"])

    assert path.parent == out and path.name.startswith("registry_speed-smoke-")
    results = json.loads(path.read_text())
    assert {"machine", "setup", "export", "sha256_only", "stores", "table"} <= set(results)
    assert set(results["setup"]["files"]) == {
        "checkpoint.pt",
        "generator.onnx",
        "generator.torchscript.pt",
        "samples.png",
    }
    for name in registry_speed.STORES:
        store = results["stores"][name]
        for step in ("publish", "promote", "pull_cold", "pull_warm"):
            assert len(store[step]["all_s"]) == 1 and store[step]["median_s"] > 0
        assert store["publish"]["split_median"]["store_put_file_s"] > 0
    assert results["stores"]["s3"]["publish"]["split_median"]["server_cpu_s"] >= 0
    assert "| cold pull (download + sha256 + install) |" in results["table"]

    # The server is gone: nothing answers on its S3 port any more.
    host, port = results["setup"]["s3_store"]["endpoint"].split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        assert sock.connect_ex((host, int(port))) != 0


@pytest.mark.usefixtures("evaluation_classifier_file")  # evaluates with it
def test_flow_overhead_benchmark_runs(tmp_path: Path) -> None:
    """In a subprocess: the benchmark sets Prefect and registry variables for its own process."""
    import subprocess
    import sys

    out = tmp_path / "results"
    args = ["--limit", "256", "--epochs", "1", "--eval-samples", "200", "--repeats", "1"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.flow_overhead",
            *args,
            "--out",
            str(out),
            "--tag",
            "smoke",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("flow_overhead-smoke-*.json")
    results = json.loads(path.read_text())
    assert len(results["plain_s"]) == len(results["flow_s"]) == 1
    assert results["median_flow_s"] > 0 and results["median_plain_s"] > 0


@pytest.mark.usefixtures("evaluation_classifier_file")  # evaluates with it
def test_recipes_benchmark_judges_raw_and_ema_per_epoch(tmp_path: Path) -> None:
    tiny = ["limit=256", "batch_size=64", "g_width=8", "d_width=8", "ema_decay=0.9"]
    args = [f"--set={pair}" for pair in tiny]
    args += ["--epochs", "2", "--samples", "200", "--runs", str(tmp_path / "runs")]
    args += ["--variant", "base:", "--variant", "sn-hinge:d_spectral_norm=true,loss=hinge"]
    path = recipes.main([*args, "--out", str(tmp_path / "results"), "--tag", "smoke"])

    results = json.loads(path.read_text())
    assert path.name.startswith("recipes-mnist-smoke-") and results["machine"]["cpu"]
    assert results["variants"]["sn-hinge"]["recipe"]["loss"] == "hinge"
    assert results["variants"]["sn-hinge"]["recipe"]["g_width"] == 8  # the base applies
    for variant in results["variants"].values():
        epochs = variant["seeds"]["0"]
        assert [row["epoch"] for row in epochs] == [1, 2]
        for row in epochs:
            for kind in ("raw", "ema"):
                assert 0 <= row[kind]["worst_digit"] <= row[kind]["accuracy"] <= 1
                assert row[kind]["fd"] > 0
            assert len(row["class_spread"]) == len(row["class_sigma"]) == 10
        assert epochs[0]["raw"] != epochs[0]["ema"]  # two different generators were judged
    assert results["table"].count("\n| ") == 4  # two variants x (raw, ema)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--variant", "nocolon"], "write NAME:KEY=VALUE"),
        (["--variant", "x:loss"], "'loss' is not KEY=VALUE"),
        (["--variant", "x:loss=nope"], "variant x: loss: Input should be 'bce' or 'hinge'"),
    ],
)
def test_recipes_benchmark_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        recipes.main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_balance_verdict_names_the_strongest_baseline_and_applies_two_stds() -> None:
    from benchmarks.balance_verdict import verdict

    def results(generated: list[float]) -> dict[str, object]:
        methods = {
            "skewed": [0.90, 0.91, 0.92],
            "logit-adjusted": [0.970, 0.972, 0.974],
            "class-weighted": [0.96, 0.96, 0.96],
            "generated+recipe": generated,
            "full": [0.99, 0.99, 0.99],  # the ceiling: never the baseline
        }
        return {
            "dataset": "mnist",
            "scenario": "own-data",
            "boundary": {"upper_bound": False},
            "methods": {
                n: {"accuracy": a, "accuracy_mean": sum(a) / 3} for n, a in methods.items()
            },
        }

    wins = verdict(results([0.980, 0.981, 0.982]))
    assert (
        wins["strongest_baseline"] == "logit-adjusted"
        and wins["best_generated"] == "generated+recipe"
    )
    assert wins["beats_by_two_std"] is True and abs(wins["difference"] - 0.009) < 1e-9
    # Ahead on average, but by less than two of the larger standard deviation: not a win.
    close = verdict(results([0.969, 0.975, 0.981]))
    assert close["difference"] > 0 and close["beats_by_two_std"] is False


def test_balance_verdict_pools_runs_over_other_seeds() -> None:
    from benchmarks.balance_verdict import pool, verdict

    def run(seeds: list[int], base: list[float], gen: list[float]) -> dict[str, object]:
        methods = {"logit-adjusted": base, "generated+recipe": gen, "skewed": [0.5] * len(seeds)}
        return {
            "dataset": "fashion-mnist",
            "scenario": "public",
            "boundary": {"upper_bound": False},
            "setup": {"seeds": seeds},
            "methods": {
                n: {"accuracy": a, "accuracy_mean": sum(a) / len(a)} for n, a in methods.items()
            },
        }

    later = run([3, 4], [0.80, 0.79], [0.82, 0.81])
    pooled = pool([later, run([0, 1, 2], [0.78, 0.80, 0.80], [0.81, 0.81, 0.82])])
    assert pooled["setup"]["seeds"] == [0, 1, 2, 3, 4]
    assert pooled["methods"]["logit-adjusted"]["accuracy"] == [0.78, 0.80, 0.80, 0.80, 0.79]
    assert verdict(pooled)["seeds"] == 5
    with pytest.raises(ValueError, match="repeat a seed"):
        pool([later, later])
