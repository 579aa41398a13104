"""The value claim's verdict from `dcgan experiment balance` results (issue 30, item 6).

For each results JSON: the strongest baseline (the best mean accuracy among the methods that use
no generated image, the full set excluded), the best method with generated images, and whether
the latter beats the former by more than two standard deviations over the seeds. Two spreads are
shown: the larger of the two methods' own standard deviations (the claim's test), and that of the
per-seed differences (the seeds pair up: the same skewed set and classifier seed).

    python -m benchmarks.balance_verdict benchmarks/results/balance-*-own-data-*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

NOT_BASELINES = {"full"}


def is_generated(name: str) -> bool:
    return name.startswith("generated")


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    """Strongest baseline, best generated method, their difference and the two-std test."""
    methods = results["methods"]
    baselines = {n: m for n, m in methods.items() if not is_generated(n) and n not in NOT_BASELINES}
    generated = {n: m for n, m in methods.items() if is_generated(n)}
    if not baselines or not generated:
        raise ValueError("the results need at least one baseline and one generated method")
    base_name = max(baselines, key=lambda n: baselines[n]["accuracy_mean"])
    gen_name = max(generated, key=lambda n: generated[n]["accuracy_mean"])
    base = np.asarray(methods[base_name]["accuracy"])
    gen = np.asarray(methods[gen_name]["accuracy"])
    diff = float(gen.mean() - base.mean())
    spread = float(max(gen.std(ddof=1), base.std(ddof=1))) if len(gen) > 1 else 0.0
    paired = float((gen - base).std(ddof=1)) if len(gen) > 1 else 0.0
    return {
        "dataset": results.get("dataset"),
        "scenario": results.get("scenario", "service (oracle)"),
        "upper_bound": results.get("boundary", {}).get("upper_bound", True),
        "seeds": len(gen),
        "strongest_baseline": base_name,
        "baseline_accuracy": float(base.mean()),
        "best_generated": gen_name,
        "generated_accuracy": float(gen.mean()),
        "difference": diff,
        "larger_std": spread,
        "paired_std": paired,
        "beats_by_two_std": bool(diff > 2 * spread) if len(gen) > 1 else None,
    }


def line(v: dict[str, Any]) -> str:
    """One Markdown table row of a verdict."""
    scenario = f"{v['scenario']}{' (UPPER BOUND)' if v['upper_bound'] else ''}"
    outcome = {True: "yes", False: "**no**", None: "n/a (1 seed)"}[v["beats_by_two_std"]]
    return (
        f"| {v['dataset']} | {scenario} | {v['strongest_baseline']} "
        f"{100 * v['baseline_accuracy']:.2f}% | {v['best_generated']} "
        f"{100 * v['generated_accuracy']:.2f}% | {100 * v['difference']:+.2f} | "
        f"{100 * v['larger_std']:.2f} / {100 * v['paired_std']:.2f} | {outcome} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results JSON files")
    args = parser.parse_args(argv)
    print(
        "| dataset | scenario | strongest baseline | best generated | difference (points) "
        "| std: larger / paired | beats by > 2 std |"
    )
    print("|---|---|---|---|---:|---|---|")
    for path in args.results:
        print(line(verdict(json.loads(path.read_text()))))


if __name__ == "__main__":
    main()
