"""Fair scheduling, measured: batch-1 /generate latency while a large /balance runs, and what the
sharing costs /balance in images/s.

    python -m benchmarks.serve_fairness [--registry registry] [--balance 60000] \\
        [--baseline PATH] [--tag cpu]

For each server (this tree's ``dcgan serve``; with ``--baseline``, also the same command from
another checkout, e.g. ``git worktree add /tmp/before <commit>``, in the same run) it measures:

- ``balance_alone``: one /balance of ``--balance`` images (counts 0, an equal target per class),
  images/s;
- ``balance_with_small``: the same /balance while batch-1 /generate requests arrive open-loop, one
  every ``--gap-ms`` (20 a second by default): /balance images/s, and the small requests'
  p50/p99/max latency.

Every server runs as its own process, one at a time, with the default settings. Results:
benchmarks/results/serve_fairness-<tag>-<date>.json with a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.machine import describe
from benchmarks.serve_speed import RESULTS, server_process, service_env
from models.contract import PRODUCTION, GeneratorSignature
from models.registry.settings import RegistrySettings, open_registry
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parent.parent
MAX_SMALL_IN_FLIGHT = 64


def _percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def balance_once(url: str, images: int) -> dict[str, Any]:
    body = {"counts": [0] * 10, "target": images // 10, "seed": 1}
    started = time.perf_counter()
    response = httpx.post(f"{url}/balance", json=body, timeout=600)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"/balance answered {response.status_code}: {response.text[:300]}")
    count = int(response.headers["x-batch-size"])
    return {"images": count, "seconds": round(seconds, 3), "images_per_s": round(count / seconds)}


def balance_with_small_requests(url: str, images: int, gap_s: float) -> dict[str, Any]:
    """The large request in a thread; meanwhile batch-1 requests sent open-loop, one every
    ``gap_s`` whether or not the earlier ones were answered (a closed loop would hide a request
    stuck behind the /balance: it sends nothing while it waits)."""
    outcome: dict[str, Any] = {}
    latencies: list[float] = []
    statuses: list[int] = []

    def large() -> None:
        try:
            outcome.update(balance_once(url, images))
        except Exception as exc:  # reported in the results, the small requests stop
            outcome["error"] = str(exc)

    def small(client: httpx.Client) -> None:
        started = time.perf_counter()
        response = client.post("/generate", json={"batch_size": 1, "format": "npy"})
        latencies.append(time.perf_counter() - started)
        statuses.append(response.status_code)

    thread = threading.Thread(target=large)
    limits = httpx.Limits(max_connections=MAX_SMALL_IN_FLIGHT)
    with (
        httpx.Client(base_url=url, timeout=120, limits=limits) as client,
        ThreadPoolExecutor(MAX_SMALL_IN_FLIGHT) as pool,
    ):
        thread.start()
        time.sleep(0.2)  # the large request is queued first
        sent: list[Future[None]] = []
        # At least one, even where the large request was answered within the head start (a
        # fast machine, a smoke-sized request): a result without a small request says nothing.
        while thread.is_alive() or not sent:
            sent.append(pool.submit(small, client))
            time.sleep(gap_s)
        for future in sent:
            future.result()
    thread.join()
    ordered = sorted(latencies)
    return {
        **outcome,
        "small_requests": len(latencies),
        "small_errors": sum(status != 200 for status in statuses),
        "small_p50_ms": round(1000 * _percentile(ordered, 0.50), 1),
        "small_p99_ms": round(1000 * _percentile(ordered, 0.99), 1),
        "small_max_ms": round(1000 * (ordered[-1] if ordered else float("nan")), 1),
    }


def measure_server(
    name: str,
    source: Path,
    registry: RegistrySettings,
    tmp: Path,
    images: int,
    gap_s: float,
) -> dict[str, Any]:
    """Start ``dcgan serve`` from ``source`` (a checkout) and run both scenarios against it."""
    port = free_port()
    env = service_env(registry, tmp / f"{name}-cache", port, batching=True)
    env["PYTHONPATH"] = str(source)  # the checkout's packages before the installed ones
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", "serve"]
    url = f"http://127.0.0.1:{port}"
    with server_process(command, env, f"{url}/readyz", tmp / f"{name}.log", cwd=source):
        balance_once(url, min(images, 1000))  # warm-up
        alone = balance_once(url, images)
        shared = balance_with_small_requests(url, images, gap_s)
    cost = 1 - shared.get("images_per_s", 0) / alone["images_per_s"]
    row = {
        "server": name,
        "commit": _commit(source),
        "balance_alone": alone,
        "balance_with_small": shared,
        "balance_slowdown_with_small": round(cost, 3),
    }
    print(json.dumps(row), flush=True)
    return row


def _commit(checkout: Path) -> str:
    """The checkout's commit (with "+changes" when its tree differs), never its local path."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{commit}+changes" if git("status", "--porcelain", "--untracked-files=no") else commit


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| server | /balance alone img/s | /balance + small img/s | small p50 ms | small p99 ms "
        "| small max ms | small requests |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        shared = r["balance_with_small"]
        lines.append(
            f"| {r['server']} | {r['balance_alone']['images_per_s']} | "
            f"{shared.get('images_per_s', 'failed')} | {shared['small_p50_ms']} | "
            f"{shared['small_p99_ms']} | {shared['small_max_ms']} | {shared['small_requests']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registry", default=None, help="registry URI (default: the settings)")
    parser.add_argument("--balance", type=int, default=60_000, help="images in the /balance")
    parser.add_argument("--gap-ms", type=float, default=50.0, help="one small request every")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare")
    parser.add_argument("--tag", default="cpu", help="results file tag")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)

    settings = RegistrySettings(**({"uri": args.registry} if args.registry else {}))
    registry = open_registry(settings)
    version = registry.resolve(PRODUCTION)
    sig = GeneratorSignature.from_dict(registry.show(version).signature)
    uri = settings.uri if "://" in settings.uri else str(Path(settings.uri).resolve())
    pinned = RegistrySettings(uri=uri, model_name=settings.model_name)
    servers = {"this tree": REPO}
    if args.baseline is not None:
        servers["baseline"] = args.baseline.resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve-fairness-") as tmp_name:
        for name, source in servers.items():
            rows.append(
                measure_server(
                    name, source, pinned, Path(tmp_name), args.balance, args.gap_ms / 1000
                )
            )
    results = {
        "machine": describe(),
        "model": {"name": registry.model, "version": version, "signature": sig.to_dict()},
        "settings": {"balance_images": args.balance, "gap_ms": args.gap_ms},
        "rows": rows,
        "table": markdown(rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    path: Path = args.out / f"serve_fairness-{args.tag}-{day}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
