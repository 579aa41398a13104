"""benchmarks/balance_memory.py end to end in a tiny mode, so that it keeps working: a real
``dcgan serve`` on the filtering registry, small limits, one repeat."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import balance_memory


def test_balance_memory_benchmark_runs_and_reads_the_servers_memory(
    filtering_registry: Path, tmp_path: Path
) -> None:
    limits = ["max_balance_images=200", "max_batch_size=200", "max_queue_images=400"]
    limits.append("max_candidates=4")
    args = ["--registry", str(filtering_registry), "--repeats", "1", "--min-confidence", "0"]
    args += [f"--set={pair}" for pair in limits]
    path = balance_memory.main([*args, "--out", str(tmp_path), "--tag", "smoke"])

    assert path.parent == tmp_path and path.name.startswith("balance-memory-smoke-")
    results = json.loads(path.read_text())
    assert results["machine"]["cpu"] and set(results["machine"]["cpu_flags"]) >= {"avx2"}
    limit = results["k8s_api_memory_limit_mib"]  # k8s/base/api.yaml
    assert limit == balance_memory.pod_memory_limit_bytes() / 2**20 > 0
    summary = results["summary"]
    assert summary["unfiltered"]["images"] == 200 and summary["unfiltered"]["statuses"] == [200]
    assert summary["filtered"]["images"] == 100 and summary["filtered"]["statuses"] == [200]
    assert summary["filtered-refused"]["statuses"] == [413]
    for row in results["rows"]:
        assert 0 < row["rss_after_mib"] <= row["peak_mib"]
    assert summary["target"]["under_mib"] == limit / 2
    assert "| filtered | 100 |" in results["table"]
