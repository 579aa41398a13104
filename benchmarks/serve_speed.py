"""Serving throughput and latency, every backend in one run on one machine.

    python -m benchmarks.serve_speed [--registry registry] [--ref production] [--tag cpu]

For batch sizes 1, 64 and 1024 at concurrency 1, 8 and 32 (a bounded async load generator on
loopback, benchmarks/loadgen.py), measures images/s and p50/p99 latency of:

- ``inprocess``: ONNX Runtime called in the benchmark process with the service's inference pool
  (one single-threaded call per core), no HTTP: the ceiling;
- ``service``: this service (``dcgan serve``), dynamic batching on (the default);
- ``service-nobatch``: the same with ``DCGAN_SERVE_BATCHING=false``;
- ``torchserve``: TorchServe with our handler over the TorchScript artifact;
- ``eager``: a plain FastAPI app over the eager PyTorch generator (benchmarks/eager_server.py).

Every server answers the same request, ``{"seed", "batch_size", "format": "npy"}``, and runs as
its own process; only one runs at a time. Results: benchmarks/results/serve_speed-<tag>-<date>.json
with a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadResult, run_load
from benchmarks.machine import describe
from models.contract import PRODUCTION, GeneratorSignature, labels_for_request, latent_for_seed
from models.registry import ModelRegistry
from models.registry.settings import RegistrySettings, open_registry
from serving.core.generation import render
from serving.core.onnx_backend import OnnxBackend, inference_pool
from tests.support.ports import free_port

RESULTS = Path(__file__).parent / "results"
BACKENDS = ("inprocess", "service", "service-nobatch", "torchserve", "eager")
REPO = Path(__file__).resolve().parent.parent


def _wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{url} exited with {process.returncode}:\n{log.read_text()[-2000:]}"
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout_s} s:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def server_process(
    command: list[str], env: dict[str, str], ready_url: str, log: Path, cwd: Path = REPO
) -> Iterator[None]:
    """Run a server until the block ends (SIGTERM, then SIGKILL after 30 s)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=out, cwd=cwd
        )
    try:
        _wait_http(ready_url, 120, process, log)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _bodies(batch: int) -> list[dict[str, Any]]:
    return [{"seed": seed, "batch_size": batch, "format": "npy"} for seed in range(16)]


def _inprocess_calls(
    backend: OnnxBackend, batch: int, workers: int, min_seconds: float, min_calls: int
) -> LoadResult:
    latencies: list[float] = []
    started = time.perf_counter()

    def call_until_done(worker: int) -> None:
        seed = worker
        while len(latencies) < min_calls or time.perf_counter() - started < min_seconds:
            t0 = time.perf_counter()
            z = latent_for_seed(seed, batch, backend.signature.latent_dim)
            render(backend.run(z, labels_for_request(batch, None)))
            latencies.append(time.perf_counter() - t0)
            seed += workers

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(call_until_done, range(workers)))
    seconds = time.perf_counter() - started
    return LoadResult(len(latencies), 0, seconds, latencies, batch * len(latencies))


def measure_inprocess(
    local: Path, sig: GeneratorSignature, batches: list[int], min_seconds: float, min_calls: int
) -> list[dict[str, Any]]:
    """The ceiling: latent + ONNX Runtime + uint8 conversion in this process, no HTTP, with the
    service's own inference pool (``workers`` threads calling back to back)."""
    workers, threads = inference_pool("cpu")
    backend = OnnxBackend(local / "generator.onnx", sig, device="cpu", threads=threads)
    rows = []
    for batch in batches:
        result = _inprocess_calls(backend, batch, workers, min_seconds, min_calls)
        rows.append(
            {"backend": "inprocess", "batch": batch, "concurrency": workers, **result.summary()}
        )
        print(
            f"  inprocess batch {batch} ({workers} x {threads} thread): "
            f"{rows[-1]['images_per_s']} img/s",
            flush=True,
        )
    return rows


def measure_http(
    name: str,
    url: str,
    batches: list[int],
    concurrencies: list[int],
    min_seconds: float,
    max_seconds: float,
) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        run_load(
            url,
            _bodies(batch),
            concurrency=1,
            images_per_request=batch,
            min_requests=3,
            min_seconds=0,
            max_seconds=max_seconds,
        )  # warm-up
        for concurrency in concurrencies:
            result = run_load(
                url,
                _bodies(batch),
                concurrency=concurrency,
                images_per_request=batch,
                min_requests=max(20, 2 * concurrency),
                min_seconds=min_seconds,
                max_seconds=max_seconds,
            )
            row = {"backend": name, "batch": batch, "concurrency": concurrency, **result.summary()}
            rows.append(row)
            print(
                f"  {name} batch {batch} x{concurrency}: {row['images_per_s']} img/s "
                f"p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms errors {row['errors']}",
                flush=True,
            )
    return rows


def service_env(
    registry: RegistrySettings, cache: Path, port: int, batching: bool
) -> dict[str, str]:
    return {
        "DCGAN_REGISTRY_URI": registry.uri,
        "DCGAN_REGISTRY_MODEL_NAME": registry.model_name,
        "DCGAN_REGISTRY_CACHE_DIR": str(cache),
        "DCGAN_SERVE_PORT": str(port),
        "DCGAN_SERVE_POLL_INTERVAL_S": "0",
        "DCGAN_SERVE_BATCHING": "true" if batching else "false",
    }


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's CPU targets, computed from this run's rows."""

    def get(backend: str, batch: int, concurrency: int) -> dict[str, Any] | None:
        for row in rows:
            if (row["backend"], row["batch"], row["concurrency"]) == (backend, batch, concurrency):
                return row
        return None

    targets: dict[str, Any] = {}
    ceiling = next((r for r in rows if r["backend"] == "inprocess" and r["batch"] == 1024), None)
    if ceiling:
        for row in rows:
            if row["backend"] == "service" and row["batch"] == 1024:
                ratio = row["images_per_s"] / ceiling["images_per_s"]
                targets[f"service/inprocess batch 1024 x{row['concurrency']} (>= 0.85)"] = round(
                    ratio, 3
                )
    for row in rows:
        if row["backend"] == "service" and row["batch"] in (64, 1024):
            ts = get("torchserve", row["batch"], row["concurrency"])
            if ts and ts["images_per_s"]:
                key = f"service/torchserve batch {row['batch']} x{row['concurrency']} (>= 2)"
                targets[key] = round(row["images_per_s"] / ts["images_per_s"], 2)
    p99 = get("service", 1, 32)
    if p99:
        targets["service batch 1 x32 p99 ms (<= 20)"] = p99["p99_ms"]
    return targets


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | batch | concurrency | images/s | p50 ms | p99 ms | requests | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['batch']} | {r['concurrency']} | {r['images_per_s']:.0f} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['requests']} | {r['errors']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--registry", default=None, help="registry URI (default DCGAN_REGISTRY_URI)"
    )
    parser.add_argument("--ref", default=PRODUCTION, help="alias or version to serve")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--tag", default="cpu", help="results file tag")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
    batches = [int(b) for b in args.batches.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    settings = RegistrySettings(**({"uri": args.registry} if args.registry else {}))
    registry = open_registry(settings)
    version = registry.resolve(args.ref)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="serve-speed-") as tmp_name:
        tmp = Path(tmp_name)
        local = registry.pull(version, tmp / "cache")
        sig = GeneratorSignature.from_dict(registry.show(version).signature)
        pinned = RegistrySettings(uri=settings.uri, model_name=settings.model_name)
        runners: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "inprocess": lambda: measure_inprocess(local, sig, batches, args.min_seconds, 10),
            "service": lambda: _run_service(
                pinned, tmp, True, batches, concurrencies, args, "service"
            ),
            "service-nobatch": lambda: _run_service(
                pinned, tmp, False, batches, concurrencies, args, "service-nobatch"
            ),
            "eager": lambda: _run_eager(local, tmp, batches, concurrencies, args),
            "torchserve": lambda: _run_torchserve(
                registry, version, tmp, batches, concurrencies, args
            ),
        }
        for name in backends:
            print(f"{name}:", flush=True)
            rows += runners[name]()
    results = {
        "machine": describe(),
        "model": {"name": registry.model, "version": version, "signature": sig.to_dict()},
        "inference_pool": dict(zip(("workers", "threads"), inference_pool("cpu"), strict=True)),
        "settings": {
            "batches": batches,
            "concurrency": concurrencies,
            "min_seconds": args.min_seconds,
            "request": {"format": "npy", "digits": "omitted (0..9 cycle)"},
        },
        "rows": rows,
        "targets": check_targets(rows),
    }
    results["table"] = markdown(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    path: Path = args.out / f"serve_speed-{args.tag}-{day}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    print(json.dumps(results["targets"], indent=2))
    print(f"wrote {path}")
    return path


def _run_service(
    registry: RegistrySettings,
    tmp: Path,
    batching: bool,
    batches: list[int],
    concurrencies: list[int],
    args: argparse.Namespace,
    name: str,
) -> list[dict[str, Any]]:
    port = free_port()
    env = service_env(registry, tmp / "cache", port, batching)
    dcgan = str(Path(sys.executable).parent / "dcgan")
    base = f"http://127.0.0.1:{port}"
    with server_process([dcgan, "serve"], env, f"{base}/readyz", tmp / f"{name}.log"):
        return measure_http(
            name, f"{base}/generate", batches, concurrencies, args.min_seconds, args.max_seconds
        )


def _run_eager(
    local: Path, tmp: Path, batches: list[int], concurrencies: list[int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.eager_server:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {"DCGAN_EAGER_CHECKPOINT": str(local / "checkpoint.pt")}
    base = f"http://127.0.0.1:{port}"
    with server_process(command, env, f"{base}/readyz", tmp / "eager.log"):
        return measure_http(
            "eager", f"{base}/generate", batches, concurrencies, args.min_seconds, args.max_seconds
        )


def _run_torchserve(
    registry: ModelRegistry,
    version: str,
    tmp: Path,
    batches: list[int],
    concurrencies: list[int],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    from serving.torchserve.archive import build_archive
    from tests.support.torchserve import running_torchserve

    store = tmp / "model-store"
    mar = build_archive(registry, version, store, cache_dir=tmp / "cache")
    with running_torchserve(store, mar.name, tmp / "torchserve") as server:
        url = f"{server.inference_url}/predictions/{registry.model}"
        return measure_http(
            "torchserve", url, batches, concurrencies, args.min_seconds, args.max_seconds
        )


if __name__ == "__main__":
    main()
