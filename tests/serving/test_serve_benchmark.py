"""The serving benchmark, end to end in a tiny mode (every backend, small batches, short runs)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import serve_fairness, serve_speed


def test_serve_speed_benchmark_measures_every_backend(registry_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--registry", str(registry_dir), "--batches", "1,8", "--concurrency", "1,2"]
    args += ["--min-seconds", "0.2", "--max-seconds", "5", "--out", str(out), "--tag", "smoke"]
    path = serve_speed.main(args)

    assert path.parent == out and path.name.startswith("serve_speed-smoke-")
    results = json.loads(path.read_text())
    assert results["model"]["version"] == "v1"
    rows = results["rows"]
    for backend in serve_speed.BACKENDS:
        mine = [r for r in rows if r["backend"] == backend]
        assert mine, backend
        for row in mine:
            assert row["errors"] == 0 and row["requests"] >= 1, row
            assert row["images_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0, row
    assert len([r for r in rows if r["backend"] == "service"]) == 4  # 2 batches x 2 concurrency
    assert "| service | 8 | 2 |" in results["table"]


def test_serve_fairness_benchmark_runs_both_scenarios(registry_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--registry", str(registry_dir), "--balance", "3000", "--gap-ms", "5"]
    path = serve_fairness.main([*args, "--out", str(out), "--tag", "smoke"])

    assert path.parent == out and path.name.startswith("serve_fairness-smoke-")
    results = json.loads(path.read_text())
    (row,) = results["rows"]
    assert row["server"] == "this tree"
    assert row["balance_alone"]["images"] == 3000 and row["balance_alone"]["images_per_s"] > 0
    shared = row["balance_with_small"]
    assert shared["images"] == 3000 and "error" not in shared
    assert shared["small_requests"] >= 1 and shared["small_errors"] == 0
    assert shared["small_max_ms"] >= shared["small_p99_ms"] >= shared["small_p50_ms"] > 0
    assert "| this tree |" in results["table"]
