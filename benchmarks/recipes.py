"""GAN recipes side by side: the same data, seeds and evaluation, judged after every epoch.

Each variant is the base recipe plus a few trainer options. After every epoch both the trained
generator and, where the recipe keeps one, its moving average (EMA) are judged with the
evaluation classifier (conditional accuracy, worst digit, Frechet distance), off the clock, so the
EMA's effect is measured per epoch. One results file holds every variant and seed, with the
machine it ran on, and a markdown table of the last epoch.

    python -m benchmarks.recipes --epochs 3 \\
        --set g_width=32 --set d_width=32 --set lr_g=1e-3 --set lr_d=1e-3 --set ema_decay=0.999 \\
        --variant base: --variant sn:d_spectral_norm=true --variant hinge:loss=hinge \\
        --variant sn-hinge:d_spectral_norm=true,loss=hinge

With ``--skew KEEP`` every variant trains on the balancing experiment's skewed split instead (its
seed-0 split: KEEP of each image of the rare digits 0-4, all of the others; the "own data"
scenario), and each judgement adds the rare classes' own quality: their accuracy by both
classifiers and their per-class Frechet distance, beside the trainer's collapse signals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import torch
from pydantic import ValidationError

from benchmarks.machine import describe
from benchmarks.train_speed import trainer_epoch
from models.fileio import write_atomic
from pipeline.data.loading import load_dataset
from pipeline.evaluation.classifier import get_classifier
from pipeline.evaluation.metrics import evaluate_generator, real_reference
from pipeline.evaluation.options import EVAL
from pipeline.experiments.balance import BalanceSetup, skewed_indices
from pipeline.train import GANTrainer, resolve_device
from pipeline.train_config import TrainConfig

RESULTS = Path(__file__).parent / "results"
DEFAULT_VARIANTS = [
    "base:",
    "sn:d_spectral_norm=true",
    "hinge:loss=hinge",
    "sn-hinge:d_spectral_norm=true,loss=hinge",
]


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """``key=value,key=value`` -> dict (values stay strings: TrainConfig validates them)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{what}: {item!r} is not KEY=VALUE")
        pairs[key.strip().replace("-", "_")] = value.strip()
    return pairs


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, sep, options = text.partition(":")
    if not sep or not name:
        fail(f"--variant {text!r}: write NAME:KEY=VALUE[,KEY=VALUE] (or NAME:)")
    return name, parse_pairs(options, f"--variant {name}")


def judge(
    generator: torch.nn.Module, cfg: TrainConfig, context: dict[str, Any], samples: int
) -> dict[str, float]:
    report = evaluate_generator(
        generator,
        cfg.gan_config(),
        context["dataset"],
        context["classifier"],
        context["reference"],
        context["device"],
        num_samples=samples,
        tstr_count=0,
    )
    per_class = report.per_class_accuracy or [float("nan")]
    scores: dict[str, Any] = {
        "accuracy": report.accuracy or 0.0,
        "worst_digit": min(per_class),
        "fd": report.fd,
    }
    rare = context.get("rare")
    if rare:
        second = report.independent.per_class_accuracy if report.independent else []
        class_fd = report.per_class_fd or []
        scores["rare"] = {
            "accuracy": _mean([per_class[c] for c in rare]),
            "independent_accuracy": _mean([second[c] for c in rare]) if second else None,
            "fd": _mean([class_fd[c] for c in rare if class_fd[c] is not None]),
            "per_class_accuracy": [round(per_class[c], 4) for c in rare],
            "per_class_independent": [round(second[c], 4) for c in rare] if second else None,
            "per_class_fd": [class_fd[c] for c in rare],
        }
        scores["common_fd"] = _mean(
            [f for c, f in enumerate(class_fd) if c not in rare and f is not None]
        )
    return scores


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def run_variant(
    cfg: TrainConfig, out_dir: Path, context: dict[str, Any], samples: int
) -> list[dict[str, Any]]:
    """Train ``cfg.epochs`` epochs; after each, judge the raw generator and its EMA (if kept)."""
    dataset = context["dataset"]
    trainer = GANTrainer(cfg.model_copy(update={"epochs": 0}), out_dir)
    trainer.dataset_info = {"name": dataset.name, "md5": dataset.md5, "limit": cfg.limit}
    images, labels = context.get("train") or dataset.train_subset(cfg.limit, cfg.seed)
    rows = []
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        trainer_epoch(trainer, images, labels)
        row: dict[str, Any] = {"epoch": epoch, "train_seconds": time.perf_counter() - started}
        last = trainer.history[-1]
        row["d_g_z"] = last["d_g_z"]
        row["collapse_signals"] = last["collapse_signals"]
        row["class_spread"] = last["class_spread"]  # of the served generator, against its real
        row["class_sigma"] = last.get("class_sigma")  # gSR's per-class norm (conditional only)
        row["raw"] = judge(trainer.generator.eval(), cfg, context, samples)
        trainer.generator.train()
        if trainer.ema is not None:
            row["ema"] = judge(trainer.ema.module, cfg, context, samples)
        print(f"  epoch {epoch}: {json.dumps(row)}", flush=True)
        rows.append(row)
    return rows


RARE_COLUMNS = ("accuracy", "independent_accuracy", "fd")


def table(results: dict[str, Any]) -> str:
    """Markdown: the last epoch of every variant, mean over seeds, EMA where kept."""
    lines = [
        "| variant | options | epochs | generator | accuracy | worst digit | FD |",
        "|---|---|---|---|---|---|---|",
    ]
    if results.get("skew"):
        lines[0] += " rare: accuracy | rare: independent | rare: per-class FD |"
        lines[1] += "---|---|---|"
    for name, variant in results["variants"].items():
        options = ", ".join(f"{k}={v}" for k, v in variant["options"].items()) or "(base)"
        for kind in ("raw", "ema"):
            last = [runs[-1][kind] for runs in variant["seeds"].values() if kind in runs[-1]]
            if not last:
                continue
            mean = {key: _mean([r[key] for r in last]) for key in ("accuracy", "worst_digit", "fd")}
            epochs = len(next(iter(variant["seeds"].values())))
            row = (
                f"| {name} | {options} | {epochs} | {kind} | {mean['accuracy']:.2%} "
                f"| {mean['worst_digit']:.2%} | {mean['fd']:.2f} |"
            )
            if "rare" in last[0]:
                rare = {k: _mean([r["rare"][k] for r in last]) for k in RARE_COLUMNS}
                row += (
                    f" {rare['accuracy']:.2%} | {rare['independent_accuracy']:.2%} "
                    f"| {rare['fd']:.2f} |"
                )
            lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="base option KEY=VALUE")
    parser.add_argument(
        "--variant", action="append", default=None, help="NAME:KEY=VALUE[,KEY=VALUE] on the base"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--samples", type=int, default=EVAL.samples, help="digits per judgement")
    parser.add_argument(
        "--skew", type=float, default=None, help="train on the skewed split keeping KEEP of 0-4"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=Path, default=Path("runs/recipes"), help="run directories")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default=None, help="results file tag (default: cpu or gpu)")
    args = parser.parse_args(argv)

    base = parse_pairs(",".join(args.set), "--set")
    variants = dict(parse_variant(text) for text in args.variant or DEFAULT_VARIANTS)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    device = resolve_device(args.device)
    configs = {}
    for name, options in variants.items():
        for seed in seeds:
            merged = {**base, **options, "epochs": args.epochs, "seed": seed}
            try:
                merged.update(dataset=args.dataset, device=str(device))
                configs[name, seed] = TrainConfig.model_validate(merged)
            except ValidationError as exc:
                error = exc.errors()[0]
                fail(f"variant {name}: {'.'.join(map(str, error['loc']))}: {error['msg']}")

    dataset = load_dataset(args.dataset)
    classifier = get_classifier(dataset, device)
    context: dict[str, Any] = {
        "dataset": dataset,
        "device": device,
        "classifier": classifier,
        "reference": real_reference(classifier.model, dataset, device),
    }
    if args.skew is not None:
        setup = BalanceSetup(keep=args.skew)
        keep = skewed_indices(dataset.train_labels, setup, seed=0)
        context["train"] = (dataset.train_images[keep], dataset.train_labels[keep])
        context["rare"] = list(setup.rare)
    results: dict[str, Any] = {
        "machine": describe(),
        "dataset": args.dataset,
        "samples": args.samples,
        "classifier_test_accuracy": classifier.test_accuracy,
        "fd_floor": context["reference"].fd_floor,
        "base": base,
        "skew": None if args.skew is None else {"keep": args.skew, "rare": context["rare"]},
        "variants": {},
    }
    tag = args.tag or ("gpu" if device.type == "cuda" else "cpu")
    skew = "" if args.skew is None else f"-skewed{args.skew:g}"
    date = results["machine"]["date"][:10]
    path: Path = args.out / f"recipes-{args.dataset}{skew}-{tag}-{date}.json"
    for (name, seed), cfg in configs.items():
        print(f"{name} seed {seed}: {variants[name] or '(base)'}", flush=True)
        entry = results["variants"].setdefault(name, {"options": variants[name], "seeds": {}})
        entry["recipe"] = cfg.model_dump(exclude={"seed"})
        entry["seeds"][str(seed)] = run_variant(
            cfg, args.runs / f"{name}-s{seed}", context, args.samples
        )
        results["table"] = table(results)  # written after every run: a stopped one keeps them
        write_atomic(path, json.dumps(results, indent=2).encode())
    print(results["table"])
    print(f"written {path}")
    return path


if __name__ == "__main__":
    main()
