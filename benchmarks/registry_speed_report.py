"""The registry benchmark's report: its results as a Markdown table and a JSON file
(benchmarks/registry_speed.py measures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MB = 1e6  # the benchmark's unit: 10^6 bytes


# --- reporting -----------------------------------------------------------------------------------


def _cell(entry: dict[str, Any]) -> tuple[str, str]:
    seconds = f"{entry['median_s']:.3f} / {entry['min_s']:.3f}"
    return seconds, (f"{entry['median_mb_s']:.0f}" if "median_mb_s" in entry else "-")


def markdown_table(results: dict[str, Any]) -> str:
    setup, stores = results["setup"], results["stores"]
    local, s3 = stores["local"], stores["s3"]
    header = [
        f"Model version: {len(setup['files'])} files, {setup['total_mb']:.1f} MB "
        f"({', '.join(f'{n} {b / MB:.1f}' for n, b in setup['files'].items())}); "
        f"{setup['repeats']} repeats; seconds as median / min, MB/s from the median.",
        "",
        "| step | local s | local MB/s | S3 (SeaweedFS) s | S3 MB/s |",
        "|---|---|---|---|---|",
    ]
    export_s = f"{results['export']['seconds']:.2f} (once)"
    rows = [
        f"| export (ONNX + TorchScript + parity), cold process | {export_s} | - | {export_s} | - |"
    ]
    for label, key in (
        ("publish (hash + upload + manifest + latest)", "publish"),
        ("promote (alias compare-and-swap)", "promote"),
        ("cold pull (download + sha256 + install)", "pull_cold"),
        ("warm pull (cache valid: re-hash only)", "pull_warm"),
    ):
        ls, lr = _cell(local[key])
        ss, sr = _cell(s3[key])
        rows.append(f"| {label} | {ls} | {lr} | {ss} | {sr} |")
    hs, hr = _cell(results["sha256_only"])
    rows.append(f"| sha256 of the files alone (no store) | {hs} | {hr} | {hs} | {hr} |")
    lp, sp = local["publish"]["split_median"], s3["publish"]["split_median"]
    rows.append(
        "| publish: in `put_file` / other store calls / outside the store | "
        f"{lp['store_put_file_s']:.3f} / {lp['store_other_s']:.3f} / {lp['outside_store_s']:.3f}"
        f" | - | {sp['store_put_file_s']:.3f} / {sp['store_other_s']:.3f} / "
        f"{sp['outside_store_s']:.3f} | - |"
    )
    for label, key in (("publish", "publish"), ("cold pull", "pull_cold")):
        lx, sx = local[key]["split_median"], s3[key]["split_median"]
        server_cpu = f"{sx['server_cpu_s']:.2f}" if "server_cpu_s" in sx else "?"
        rows.append(
            f"| {label}: CPU s, this process (all threads) / S3 server | "
            f"{lx['client_cpu_s']:.3f} / - | - | {sx['client_cpu_s']:.3f} / {server_cpu} | - |"
        )
    lc, sc = local["pull_cold"]["split_median"], s3["pull_cold"]["split_median"]
    rows.append(
        "| cold pull: reading the store / other store calls / outside (write, hash) | "
        f"{lc['store_iter_chunks_s']:.3f} / {lc['store_other_s']:.3f} / "
        f"{lc['outside_store_s']:.3f} | - | {sc['store_iter_chunks_s']:.3f} / "
        f"{sc['store_other_s']:.3f} / {sc['outside_store_s']:.3f} | - |"
    )
    if "publish_run_end_to_end_s" in local:
        rows.append(
            "| `publish_run` end to end (export + publish), once | "
            f"{local['publish_run_end_to_end_s']:.2f} | - | "
            f"{s3['publish_run_end_to_end_s']:.2f} | - |"
        )
    if "profile" in local:
        rows += [
            "",
            "cProfile own time per kind of work in the main thread, seconds (one profiled run "
            "each; minio uploads parts in worker threads, seen here only as waiting):",
        ]
        rows += ["", "| kind | local publish | local cold pull | S3 publish | S3 cold pull |"]
        rows.append("|---|---|---|---|---|")
        cols = [local["profile"]["publish"], local["profile"]["pull_cold"]]
        cols += [s3["profile"]["publish"], s3["profile"]["pull_cold"]]
        kinds = ["wall_s", *sorted({k for c in cols for k in c if k != "wall_s"})]
        for kind in kinds:
            label = "wall clock (profiled)" if kind == "wall_s" else kind
            rows.append(
                f"| {label} | " + " | ".join(f"{c.get(kind, 0.0):.3f}" for c in cols) + " |"
            )
    return "\n".join(header + rows)


def write_results(results: dict[str, Any], out_dir: Path, tag: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"registry_speed-{tag}-{results['machine']['date'][:10]}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
