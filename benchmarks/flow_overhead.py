"""What Prefect orchestration costs: the train-dcgan flow vs the same steps as plain calls.

    python -m benchmarks.flow_overhead [--limit 4096] [--epochs 2] [--repeats 2] [--tag cpu]

Same config, same machine, one process, alternating plain and flow runs (Prefect in ephemeral
mode, a fresh PREFECT_HOME; the first flow run also starts the ephemeral API server and is
reported apart as ``cold``). Each run: load MNIST, train with per-epoch checkpoint mirroring,
evaluate, compare with production, export + publish, promote, into a fresh local registry.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe
from models.contract import PRODUCTION

RESULTS = Path(__file__).parent / "results"


def plain_steps(config: Any, registry_dir: Path, work: Path, eval_samples: int) -> None:
    """The flow's steps without Prefect, as a script would call them."""
    from models.registry import LocalStore, ModelRegistry
    from models.registry.errors import AliasNotFound, VersionNotFound
    from pipeline.checkpoint_sync import CheckpointSync
    from pipeline.data.loading import load_dataset
    from pipeline.evaluation.options import EvalOptions
    from pipeline.evaluation.promotion import compare_with_production
    from pipeline.evaluation.run import evaluate_run
    from pipeline.publish import publish_run
    from pipeline.train import train

    registry = ModelRegistry(LocalStore(registry_dir), "cdcgan-mnist")
    dataset = load_dataset(config.dataset, config.data)
    sync = CheckpointSync(registry.store, registry.model, "plain-" + work.name)
    train(config, dataset, work, progress=False, on_epoch=sync.uploader(work))
    options = EvalOptions(samples=eval_samples, tstr_count=0)
    evaluation = evaluate_run(work, options, dataset=dataset)
    try:
        production = registry.show(PRODUCTION)
    except (AliasNotFound, VersionNotFound):
        production = None
    decision = compare_with_production(evaluation.payload, production, force=True)
    manifest = publish_run(work, registry, decision=decision).manifest
    registry.promote(manifest.version)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tag", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="flow-overhead-"))
    os.environ.update(
        {
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "DCGAN_REGISTRY_URI": str(tmp / "flow-registry"),
            "DCGAN_FLOW_WORK_DIR": str(tmp / "flow-work"),
        }
    )
    os.environ.pop("PREFECT_API_URL", None)
    from pipeline.evaluation.options import EvalOptions
    from pipeline.flow import train_dcgan
    from pipeline.train_config import TrainConfig

    config = TrainConfig(limit=args.limit, epochs=args.epochs)
    timings: dict[str, list[float]] = {"plain": [], "flow": []}
    cold = None
    for i in range(args.repeats + 1):
        started = time.perf_counter()
        plain_steps(config, tmp / "plain-registry", tmp / f"plain-{i}", args.eval_samples)
        plain_s = time.perf_counter() - started
        started = time.perf_counter()
        state = train_dcgan(
            config=config,
            force=True,
            evaluation=EvalOptions(samples=args.eval_samples, tstr_count=0),
            return_state=True,
        )
        flow_s = time.perf_counter() - started
        assert state.is_completed(), state
        print(f"round {i}: plain {plain_s:.2f} s, flow {flow_s:.2f} s", flush=True)
        if i == 0:
            cold = {"plain_s": plain_s, "flow_s": flow_s}  # imports, classifier, ephemeral API
            continue
        timings["plain"].append(plain_s)
        timings["flow"].append(flow_s)
    plain = statistics.median(timings["plain"])
    flow = statistics.median(timings["flow"])
    results = {
        "machine": describe(),
        "config": {
            "limit": args.limit,
            "epochs": args.epochs,
            "eval_samples": args.eval_samples,
            "tstr_count": 0,
            "repeats": args.repeats,
        },
        "cold_round": cold,
        "plain_s": timings["plain"],
        "flow_s": timings["flow"],
        "median_plain_s": round(plain, 3),
        "median_flow_s": round(flow, 3),
        "overhead_s": round(flow - plain, 3),
        "overhead_pct": round(100 * (flow - plain) / plain, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    path: Path = args.out / f"flow_overhead-{args.tag}-{day}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
