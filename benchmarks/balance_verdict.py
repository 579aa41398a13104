"""The value claim's verdict from `dcgan experiment balance` results (issue 30, item 6).

For each results JSON: the strongest baseline (the best mean accuracy among the methods that use
no generated image, the full set excluded), the best method with generated images, and whether
the latter beats the former by more than two standard deviations over the seeds. Two spreads are
shown: the larger of the two methods' own standard deviations (the claim's test), and that of the
per-seed differences (the seeds pair up: the same skewed set and classifier seed).

    python -m benchmarks.balance_verdict benchmarks/results/balance-*-own-data-*.json

``--pool`` judges the given files as one run: the same dataset and scenario, other seeds (a later
run adding seeds to an earlier one), over the methods every file has.
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


def pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs of the same dataset and scenario over disjoint seeds: each method's
    per-seed accuracies joined in seed order (only methods every run measured)."""
    keys = {(r.get("dataset"), r.get("scenario"), str(r.get("boundary"))) for r in runs}
    if len(keys) != 1:
        raise ValueError("pooled runs must share the dataset, scenario and boundary")
    seeds = [seed for r in runs for seed in r["setup"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"pooled runs must not repeat a seed: {sorted(seeds)}")
    names = [n for n in runs[0]["methods"] if all(n in r["methods"] for r in runs)]
    order = np.argsort(seeds, kind="stable")
    methods = {}
    for name in names:
        accuracy = [a for r in runs for a in r["methods"][name]["accuracy"]]
        joined = [accuracy[i] for i in order]
        methods[name] = {"accuracy": joined, "accuracy_mean": float(np.mean(joined))}
    return {**runs[0], "methods": methods, "setup": {**runs[0]["setup"], "seeds": sorted(seeds)}}


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
    parser.add_argument("--pool", action="store_true", help="judge the files as one run")
    args = parser.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in args.results]
    print(
        "| dataset | scenario | strongest baseline | best generated | difference (points) "
        "| std: larger / paired | beats by > 2 std |"
    )
    print("|---|---|---|---|---:|---|---|")
    for run in [pool(runs)] if args.pool else runs:
        print(line(verdict(run)))


if __name__ == "__main__":
    main()
