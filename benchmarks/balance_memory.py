"""The server's memory under the largest /balance it allows, filtered and not (issue 29).

    python -m benchmarks.balance_memory [--registry DIR_OR_S3] [--ref production] [--repeats 3]

Starts ``dcgan serve`` as its own process on the registry's model (a version published with its
evaluation classifier, so it can filter) and asks it, one request at a time, for:

- ``unfiltered``: the largest /balance it allows (``max_balance_images`` images);
- ``filtered``: the largest filtered /balance it allows (``max_queue_images // max_candidates``
  images: a filtered request is admitted for every candidate it may draw) at --min-confidence;
- ``filtered-refused``: one image more, which must be a 413 that costs nothing;

each --repeats times, each case on a fresh server. Before each request the server's peak is
reset where the kernel allows it (``/proc/PID/clear_refs``); after it, ``/proc/PID/status``
gives VmHWM (the peak resident memory during the request, or since the start where no reset was
possible) and VmRSS (what stays). Memory that stays flat over the repeats is not piling up; the
target is a peak under half the API pod's memory limit (k8s/base/api.yaml). Resident memory does
not depend on CPU contention, so this may run beside other work (its seconds do).

Results: benchmarks/results/balance-memory-<tag>-<date>.json (tag: the CPU, by default).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.machine import describe
from models.contract import NUM_CLASSES, PRODUCTION
from pipeline.machine import cpuinfo_field
from serving.api.settings import ServeSettings
from tests.serving.live import dcgan_serve

RESULTS = Path(__file__).parent / "results"
API_MANIFEST = Path(__file__).resolve().parent.parent / "k8s" / "base" / "api.yaml"
API_DEPLOYMENT = "dcgan-api"
MIB = 1024 * 1024
QUANTITY = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB, "K": 1000, "M": 10**6, "G": 10**9, "": 1}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
CASES = ("unfiltered", "filtered", "filtered-refused")


def pod_memory_limit_bytes(manifest: Path = API_MANIFEST) -> int:
    """The API container's memory limit in the k8s Deployment (e.g. ``2Gi``), in bytes."""
    for doc in yaml.safe_load_all(manifest.read_text()):
        if not doc or doc.get("kind") != "Deployment":
            continue
        if doc["metadata"]["name"] != API_DEPLOYMENT:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            limit = container.get("resources", {}).get("limits", {}).get("memory")
            quantity = re.fullmatch(r"(\d+)([KMG]i?|)", str(limit or ""))
            if quantity is not None:
                return int(quantity.group(1)) * QUANTITY[quantity.group(2)]
    raise ValueError(f"no memory limit for {API_DEPLOYMENT} in {manifest}")


def memory_mib(pid: int) -> dict[str, float]:
    """VmHWM (peak resident) and VmRSS (resident now) of ``pid``, in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key.lower()] = round(int(value.split()[0]) / 1024, 1)  # kB
    return found


def reset_peak(pid: int) -> bool:
    """Reset ``pid``'s VmHWM to its current resident size (Linux >= 4.0); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def balance_body(images: int, seed: int, min_confidence: float | None) -> dict[str, Any]:
    """A /balance body asking for ``images`` images, spread evenly over the classes."""
    target = [images // NUM_CLASSES + (k < images % NUM_CLASSES) for k in range(NUM_CLASSES)]
    body: dict[str, Any] = {"counts": [0] * NUM_CLASSES, "target": target, "seed": seed}
    if min_confidence is not None:
        body["min_confidence"] = min_confidence
    return body


def cases(settings: ServeSettings, min_confidence: float) -> list[tuple[str, int, float | None]]:
    """(name, images, min_confidence) of the largest requests ``settings`` allow."""
    filtered = min(
        settings.max_balance_images, settings.max_queue_images // settings.max_candidates
    )
    return [
        ("unfiltered", settings.max_balance_images, None),
        ("filtered", filtered, min_confidence),
        ("filtered-refused", filtered + 1, min_confidence),
    ]


def measure(
    url: str, pid: int, name: str, images: int, min_confidence: float | None, seed: int
) -> dict[str, Any]:
    """One request, and the server's memory around it."""
    before = memory_mib(pid)
    peak_reset = reset_peak(pid)
    started = time.perf_counter()
    response = httpx.post(
        f"{url}/balance", json=balance_body(images, seed, min_confidence), timeout=3600
    )
    seconds = time.perf_counter() - started
    after = memory_mib(pid)
    row = {
        "case": name,
        "images": images,
        "min_confidence": min_confidence,
        "seed": seed,
        "status": response.status_code,
        "seconds": round(seconds, 2),
        "answer_bytes": len(response.content),
        "candidates": int(response.headers.get("x-filter-candidates", 0)) or None,
        "rss_before_mib": before["vmrss"],
        "peak_mib": after["vmhwm"],
        "rss_after_mib": after["vmrss"],
        "peak_reset": peak_reset,
    }
    if response.status_code != 200:
        row["detail"] = response.text[:300]
    print(
        f"  {name} {images} images: {response.status_code} in {seconds:.1f} s, "
        f"peak {row['peak_mib']} MiB, after {row['rss_after_mib']} MiB",
        flush=True,
    )
    return row


def summarize(
    rows: list[dict[str, Any]], idle: dict[str, dict[str, float]], target_mib: float
) -> dict[str, Any]:
    """Per case: its server's idle and highest peak, what stays after each repeat, the drift."""
    summary: dict[str, Any] = {}
    for name in dict.fromkeys(r["case"] for r in rows):
        mine = [r for r in rows if r["case"] == name]
        after = [r["rss_after_mib"] for r in mine]
        summary[name] = {
            "images": mine[0]["images"],
            "idle_mib": idle[name]["vmrss"],
            "statuses": [r["status"] for r in mine],
            "peak_mib": max(r["peak_mib"] for r in mine),
            "rss_after_mib": after,
            "rss_drift_mib": round(after[-1] - after[0], 1),
        }
    peak = max(s["peak_mib"] for s in summary.values())
    summary["target"] = {"peak_mib": peak, "under_mib": target_mib, "met": peak < target_mib}
    return summary


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| case | images | statuses | idle MiB | peak MiB | resident after each repeat, MiB |",
        "|---|---:|---|---:|---:|---|",
    ]
    for name, s in summary.items():
        if name == "target":
            continue
        statuses = ", ".join(str(x) for x in s["statuses"])
        after = ", ".join(f"{x:.0f}" for x in s["rss_after_mib"])
        lines.append(
            f"| {name} | {s['images']} | {statuses} | {s['idle_mib']:.0f} | "
            f"{s['peak_mib']:.0f} | {after} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    flags = set((cpuinfo_field("flags") or "").split())
    return {**describe(), "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS}}


def default_tag() -> str:
    info = machine()
    return re.sub(r"[^a-z0-9]+", "-", f"{info['cpu']} {info['cpu_isa']}".lower()).strip("-")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registry", required=True, help="registry directory or s3:// URI")
    parser.add_argument("--model", default="cdcgan-mnist", help="registry model name")
    parser.add_argument("--ref", default=PRODUCTION, help="alias the server follows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-confidence", type=float, default=0.5)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting (DCGAN_SERVE_NAME), e.g. --set max_balance_images=200",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable of the server process, e.g. --env MALLOC_ARENA_MAX=2",
    )
    parser.add_argument("--cases", default=",".join(CASES), help="which cases to ask for")
    parser.add_argument("--tag", default=None, help="results file tag (default: the CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    overrides = dict(pair.split("=", 1) for pair in args.set)
    server_env = dict(pair.split("=", 1) for pair in args.env)
    chosen = [c for c in args.cases.split(",") if c]
    if not chosen or set(chosen) - set(CASES):
        parser.error(f"unknown cases {sorted(set(chosen) - set(CASES))}; choose from {CASES}")
    settings = ServeSettings(_env_file=None, **overrides)  # type: ignore[call-arg]
    limit = pod_memory_limit_bytes()
    target_mib = limit / 2 / MIB
    registry: Path | str = args.registry
    if not str(args.registry).startswith("s3://"):
        registry = Path(args.registry).resolve()

    rows: list[dict[str, Any]] = []
    idle: dict[str, dict[str, float]] = {}
    env = {"DCGAN_REGISTRY_MODEL_NAME": args.model, **server_env}
    serve_settings = {"alias": args.ref, **overrides}
    for name, images, confidence in cases(settings, args.min_confidence):
        if name not in chosen:
            continue
        # A fresh server per case: its peak and what stays are that case's alone.
        with (
            tempfile.TemporaryDirectory(prefix="balance-memory-") as tmp,
            dcgan_serve(registry, Path(tmp), env=env, **serve_settings) as server,
        ):
            pid = server.process.pid
            idle[name] = memory_mib(pid)
            model = httpx.get(f"{server.url}/models", timeout=30).json()["models"][0]
            print(f"{name}: {model['model']} {model['version']}, idle {idle[name]['vmrss']} MiB")
            for repeat in range(args.repeats):
                rows.append(measure(server.url, pid, name, images, confidence, repeat))
    summary = summarize(rows, idle, target_mib)
    results = {
        "machine": machine(),
        "model": {"name": model["model"], "version": model["version"]},
        "server_settings": {
            key: getattr(settings, key)
            for key in (
                "max_balance_images",
                "max_queue_images",
                "max_candidates",
                "batch_max_images",
                "workers",
                "threads",
            )
        },
        "server_env": server_env,
        "k8s_api_memory_limit_mib": limit / MIB,
        "idle_mib": idle,
        "rows": rows,
        "summary": summary,
        "table": markdown(summary),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    path: Path = args.out / f"balance-memory-{args.tag or default_tag()}-{day}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    print(json.dumps(summary["target"]))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
