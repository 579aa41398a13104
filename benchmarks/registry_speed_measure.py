"""The registry benchmark's measuring: clocks, the split of a step's time between the store and the
rest, medians and spreads, and what a profiled call spent its own time on."""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

from benchmarks.registry_speed_report import MB
from benchmarks.registry_speed_store import TimedStore

T = TypeVar("T")


def clock(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def store_split(store: TimedStore, total_s: float, main_op: str) -> dict[str, float]:
    """Seconds in the store's main operation, in its other operations, and outside the store."""
    inside = sum(store.seconds.values())
    return {
        f"store_{main_op}_s": store.seconds.get(main_op, 0.0),
        "store_other_s": inside - store.seconds.get(main_op, 0.0),
        "store_calls": float(sum(store.calls.values())),
        "outside_store_s": total_s - inside,
    }


def timing_stats(values: list[float], total_bytes: int | None = None) -> dict[str, Any]:
    median = statistics.median(values)
    out: dict[str, Any] = {
        "median_s": median,
        "min_s": min(values),
        "max_s": max(values),
        "all_s": [round(v, 4) for v in values],
    }
    if total_bytes is not None:
        out["median_mb_s"] = total_bytes / MB / median
        out["best_mb_s"] = total_bytes / MB / min(values)
    return out


def median_split(splits: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in splits) for key in splits[0]}


# Kinds of work, by the name cProfile gives a C function (Python code counts as "python").
PROFILE_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hashing (hashlib: sha256, md5)", ("_hashlib",)),
    ("fsync", ("fsync",)),
    ("waiting for other threads (minio's parallel part uploads)", ("_thread.lock",)),
    ("socket send/recv (incl. waiting for the server)", ("_socket.socket", "select", "poll")),
    ("file read/write/copy", ("_io.", "sendfile", "copy_file_range", "posix.read", "posix.write")),
)


def profile_kinds(profile: cProfile.Profile) -> dict[str, float]:
    """Own time (tottime) per kind of work, in seconds, over a profiled call."""
    kinds: dict[str, float] = {}
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        label = "python (registry, minio, urllib3, ...) and other C calls"
        if filename == "~":
            for kind, markers in PROFILE_KINDS:
                if any(marker in name for marker in markers):
                    label = kind
                    break
        kinds[label] = kinds.get(label, 0.0) + tottime
    return kinds
