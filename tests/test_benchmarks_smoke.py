"""The registry benchmark, run end to end in a tiny mode so that it keeps working.

A tiny trained run (256 digits, one epoch, narrow networks), one repeat, no cProfile pass and no
end-to-end ``publish_run``: the benchmark's own SeaweedFS server is started and must be stopped.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from benchmarks import registry_speed
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
