"""The experiment's results: per-method means over seeds, the share of the skewed-to-full gap
each closes, a Markdown table and the per-class recall plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.contract import NUM_CLASSES
from pipeline.experiments.methods import BalanceSetup


@dataclass
class MethodResult:
    accuracy: list[float] = field(default_factory=list)
    recall: list[list[float]] = field(default_factory=list)  # per seed, per class
    train_size: list[int] = field(default_factory=list)


def summarize(
    results: dict[str, MethodResult],
    setup: BalanceSetup,
    full_counts: np.ndarray,
    extra: dict[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {"setup": asdict(setup), "full_counts": full_counts.tolist(), **extra}
    methods: dict[str, Any] = {}
    for name, r in results.items():
        acc = np.asarray(r.accuracy)
        recall = np.asarray(r.recall)
        rare = recall[:, list(setup.rare)]
        methods[name] = {
            **asdict(r),
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "recall_mean": recall.mean(0).tolist(),
            "rare_recall_mean": float(rare.mean()),
            "worst_recall_mean": float(recall.min(1).mean()),
        }
    if "skewed" in methods and "full" in methods:
        floor, ceiling = methods["skewed"]["accuracy_mean"], methods["full"]["accuracy_mean"]
        for m in methods.values():
            gap = ceiling - floor
            m["gap_closed"] = (m["accuracy_mean"] - floor) / gap if gap > 0 else None
    out["methods"] = methods
    out["table"] = markdown(methods)
    return out


def markdown(methods: dict[str, Any]) -> str:
    lines = [
        "| method | train images | accuracy (mean ± std) | rare-class recall | worst class "
        "| gap closed |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, m in methods.items():
        gap = m.get("gap_closed")
        lines.append(
            f"| {name} | {int(np.mean(m['train_size']))} | "
            f"{100 * m['accuracy_mean']:.2f}% ± {100 * m['accuracy_std']:.2f} | "
            f"{100 * m['rare_recall_mean']:.2f}% | {100 * m['worst_recall_mean']:.2f}% | "
            f"{'' if gap is None else f'{100 * gap:.0f}%'} |"
        )
    return "\n".join(lines)


def plot_recall(results: dict[str, Any], path: str, title: str) -> None:
    """Grouped bars: mean per-class recall of each method, with the min..max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = results["methods"]
    fig, ax = plt.subplots(figsize=(14, 5), dpi=120)
    width = 0.8 / len(methods)
    digits = np.arange(NUM_CLASSES)
    palette = plt.get_cmap("tab20")  # the 10 dark hues first, then their light variants
    for i, (name, m) in enumerate(methods.items()):
        recall = np.asarray(m["recall"])
        mean = recall.mean(0)
        # min..max around the mean; clipped at 0: when every seed agrees, the mean can round a
        # hair past them (3 x 0.7 averages to 0.6999...), and matplotlib refuses negative bars.
        err = np.clip(np.vstack([mean - recall.min(0), recall.max(0) - mean]), 0.0, None)
        ax.bar(
            digits + (i - (len(methods) - 1) / 2) * width,
            100 * mean,
            width,
            yerr=100 * err,
            label=f"{name} ({100 * m['accuracy_mean']:.2f}%)",
            color=palette((2 * i) % 20 + (2 * i) // 20),
            capsize=2,
        )
    ax.set_xticks(digits)
    ax.set_xlabel("digit (real test set)")
    ax.set_ylabel("recall (%)")
    ax.set_ylim(
        max(0.0, 100 * min(np.asarray(m["recall"]).min() for m in methods.values()) - 5), 100.5
    )
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
