"""Registry speed: publish, promote and pull a real trained model, local directory vs S3.

One run, both stores side by side, interleaved repeat by repeat so that load from other processes
on the machine hits both alike:

- ``local``: :class:`LocalStore` in a temporary directory (the embedded default registry);
- ``s3``: :class:`S3Store` on a real SeaweedFS S3 server (``weed mini``) started on loopback for
  this run and always stopped at the end (the server of the test suite, tests/s3_server.py).

Measured, on the run's checkpoint and its exports (what ``dcgan publish`` uploads):

a. export alone (``export_checkpoint``: ONNX + TorchScript + parity checks), once, first thing
   in the process, as in a ``dcgan publish`` command (so with the exporter's one-time warm-up);
b. publish (``registry.publish``, a new version id each time; sha256 of every file, upload,
   manifest last, ``latest`` moved), ``--repeats`` times, after a first publish (recorded apart)
   that creates the bucket / root directory and opens the connections;
c. cold pull of ``production`` into an empty cache (download + sha256 verification + install);
d. warm pull of it again (the cache is valid: manifest fetched, cached files re-hashed);
e. promote (``production`` moved to the new version by compare-and-swap).

Also recorded: sha256 of the files alone (what the registry's own hashing costs), where each
operation spends its time (inside the object store vs outside it, from a timing wrapper around
the store; CPU seconds of this process and of the S3 server; and by kind of work from one
cProfile'd publish and pull per store), and, once per store, ``publish_run`` end to end (export +
publish, the path ``dcgan publish`` takes; here in a process whose exporter is warm already).
MB are 10^6 bytes. Both stores' files are in the page cache after the first publish, and the S3
server runs on the same cores as the client: these are loopback figures, not network ones.

    python -m benchmarks.registry_speed --run runs/full-default --repeats 5
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.metadata
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from benchmarks.machine import describe
from benchmarks.registry_speed_measure import (
    clock,
    median_split,
    profile_kinds,
    store_split,
    timing_stats,
)
from benchmarks.registry_speed_report import MB, markdown_table, write_results
from benchmarks.registry_speed_store import (
    TimedStore,
    process_cpu_s,
    seaweedfs,
    weed_version,
)
from models.contract import CHECKPOINT_NAME, PRODUCTION, SAMPLES_NAME
from models.registry import LocalStore, ModelRegistry, S3Store, sha256_file
from pipeline.checkpoint import load_checkpoint, resolve_checkpoint_path
from pipeline.export import export_checkpoint
from pipeline.publish import code_version, publish_run, read_evaluation
from tests.s3_server import S3TestServer  # the suite's server (see registry_speed_store.py)

RESULTS = Path(__file__).parent / "results"
MODEL = "cdcgan-mnist"
STORES = ("local", "s3")
T = TypeVar("T")


# --- what gets published -------------------------------------------------------------------------


def export_once(run: Path, out_dir: Path) -> tuple[dict[str, Path], dict[str, Any], dict[str, Any]]:
    """Export the run once (timed) and gather what ``publish_run`` would publish with it.

    Returns (files, publish keyword arguments, export figures). The files and metadata mirror
    ``pipeline.publish.publish_run``, which exports into a temporary directory on every call and
    so cannot be timed without its export.
    """
    checkpoint = resolve_checkpoint_path(run)
    run_dir = checkpoint.parent
    started = time.perf_counter()
    exported = export_checkpoint(checkpoint, out_dir)
    export_s = time.perf_counter() - started
    state = load_checkpoint(checkpoint)
    evaluation = read_evaluation(run_dir)
    files: dict[str, Path] = {p.name: p for p in (exported.onnx.path, exported.torchscript.path)}
    files[CHECKPOINT_NAME] = checkpoint
    if (run_dir / SAMPLES_NAME).is_file():
        files[SAMPLES_NAME] = run_dir / SAMPLES_NAME
    info = exported.to_manifest()
    kwargs: dict[str, Any] = {
        "signature": exported.signature,
        "metrics": {k: v for k, v in evaluation.items() if k not in ("checkpoint", "gate")},
        "training_config": {**state["train_config"], "epochs_trained": state["epoch"]},
        "dataset_md5": state.get("dataset", {}).get("md5", {}),
        "code_version": code_version(),
        "library_versions": info.pop("versions"),
        "extra": {
            "export": {k: v for k, v in info.items() if k not in ("files", "signature")},
            "gan_config": state["gan_config"],
            "quality_gate": evaluation.get("gate"),
        },
    }
    figures = {
        "seconds": export_s,
        "exporter": exported.exporter,
        "opset": exported.opset,
        "files": {f.path.name: f.size for f in exported.files},
    }
    return files, kwargs, figures


class Bench:
    """Both stores over one exported model; every measurement appends to ``self.raw``."""

    def __init__(
        self,
        files: dict[str, Path],
        publish_kwargs: dict[str, Any],
        server: S3TestServer,
        workdir: Path,
        server_pid: int | None = None,
    ) -> None:
        self.server_pid = server_pid
        self.files = files
        self.kwargs = publish_kwargs
        self.workdir = workdir
        self.total_bytes = sum(p.stat().st_size for p in files.values())
        self.stores: dict[str, TimedStore] = {
            "local": TimedStore(LocalStore(workdir / "registry")),
            "s3": TimedStore(
                S3Store(f"bench-{secrets.token_hex(6)}", server.settings(), create_bucket=True)
            ),
        }
        self.registries = {name: ModelRegistry(s, MODEL) for name, s in self.stores.items()}
        self.raw: dict[str, dict[str, list[Any]]] = {name: {} for name in STORES}
        self._pulls = 0

    def _add(self, store: str, what: str, value: Any) -> None:
        self.raw[store].setdefault(what, []).append(value)

    def _measure(self, name: str, what: str, main_op: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` once; record its wall time, its split by store, and client/server CPU."""
        store = self.stores[name]
        store.reset()
        server_before = self._server_cpu()
        client_before = time.process_time()  # every thread of this process (minio's uploaders)
        seconds, result = clock(fn)
        split = store_split(store, seconds, main_op)
        split["client_cpu_s"] = time.process_time() - client_before
        server_after = self._server_cpu()
        if name == "s3" and server_before is not None and server_after is not None:
            split["server_cpu_s"] = server_after - server_before
        self._add(name, what, seconds)
        self._add(name, f"{what}_split", split)
        return result

    def _server_cpu(self) -> float | None:
        return None if self.server_pid is None else process_cpu_s(self.server_pid)

    def publish(self, name: str) -> str:
        registry = self.registries[name]
        manifest = self._measure(
            name, "publish", "put_file", lambda: registry.publish(self.files, **self.kwargs)
        )
        return str(manifest.version)

    def promote(self, name: str, version: str) -> None:
        seconds, _ = clock(lambda: self.registries[name].promote(version))
        self._add(name, "promote", seconds)

    def pulls(self, name: str) -> None:
        """A cold pull of ``production`` into an empty cache, then a warm one from that cache."""
        registry = self.registries[name]
        self._pulls += 1
        cache = self.workdir / f"cache-{name}-{self._pulls}"
        path = self._measure(
            name, "pull_cold", "iter_chunks", lambda: registry.pull(PRODUCTION, cache)
        )
        again = self._measure(
            name, "pull_warm", "get_bytes", lambda: registry.pull(PRODUCTION, cache)
        )
        assert again == path, (again, path)
        shutil.rmtree(cache)

    def hash_only(self) -> float:
        seconds, _ = clock(lambda: [sha256_file(p) for p in self.files.values()])
        return seconds

    def profiled(self, name: str) -> dict[str, dict[str, float]]:
        """One publish and one cold pull under cProfile: own time per kind of work."""
        registry = self.registries[name]
        out: dict[str, dict[str, float]] = {}
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        manifest = registry.publish(self.files, **self.kwargs)
        profile.disable()
        out["publish"] = {"wall_s": time.perf_counter() - started, **profile_kinds(profile)}
        cache = self.workdir / f"cache-{name}-profile"
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        registry.pull(manifest.version, cache)
        profile.disable()
        out["pull_cold"] = {"wall_s": time.perf_counter() - started, **profile_kinds(profile)}
        shutil.rmtree(cache)
        return out


def run_benchmark(
    run: Path,
    server: S3TestServer,
    *,
    server_pid: int | None = None,
    repeats: int = 5,
    end_to_end: bool = True,
    profile: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure both stores against ``server``; the results, JSON-ready, with a markdown table.

    ``server_pid``: the S3 server's process on this machine, to record its CPU time too.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    # Other processes share the cores (the S3 server runs on them too): say how busy they were.
    results: dict[str, Any] = {"machine": describe(), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        workdir = Path(tmp)
        files, kwargs, export = export_once(run, workdir / "export")
        log(f"export: {export['seconds']:.2f} s ({export['exporter']})")
        bench = Bench(files, kwargs, server, workdir, server_pid)
        results["setup"] = {
            "run": str(run),
            "model": MODEL,
            "repeats": repeats,
            "files": {name: p.stat().st_size for name, p in sorted(files.items())},
            "total_bytes": bench.total_bytes,
            "total_mb": bench.total_bytes / MB,
            "local_store": f"LocalStore in {workdir / 'registry'} (temporary directory)",
            "s3_store": {
                "server": f"SeaweedFS `weed mini` on 127.0.0.1 ({weed_version()})",
                "client": f"minio {importlib.metadata.version('minio')}, plain HTTP",
                "endpoint": server.endpoint,
            },
            "order": "per repeat: for each store publish, promote, cold pull, warm pull",
        }
        results["export"] = export

        first: dict[str, dict[str, float]] = {}
        for name in STORES:  # creates the bucket / root directory, opens the connections
            bench.promote(name, bench.publish(name))
            raw = bench.raw[name]
            first[name] = {"publish_s": raw["publish"][0], "promote_s": raw["promote"][0]}
            raw.clear()
        hashes: list[float] = []
        for repeat in range(1, repeats + 1):
            hashes.append(bench.hash_only())
            for name in STORES:
                version = bench.publish(name)
                bench.promote(name, version)
                bench.pulls(name)
                raw = bench.raw[name]
                log(
                    f"repeat {repeat} {name}: publish {raw['publish'][-1]:.3f} s, promote "
                    f"{raw['promote'][-1]:.3f} s, cold pull {raw['pull_cold'][-1]:.3f} s, "
                    f"warm pull {raw['pull_warm'][-1]:.3f} s"
                )
        results["sha256_only"] = timing_stats(hashes, bench.total_bytes)

        stores: dict[str, Any] = {}
        for name in STORES:
            raw = bench.raw[name]
            stores[name] = {
                "location": bench.stores[name].location,
                "first_publish": first[name],
                "publish": {
                    **timing_stats(raw["publish"], bench.total_bytes),
                    "split_median": median_split(raw["publish_split"]),
                },
                "promote": timing_stats(raw["promote"]),
                "pull_cold": {
                    **timing_stats(raw["pull_cold"], bench.total_bytes),
                    "split_median": median_split(raw["pull_cold_split"]),
                },
                "pull_warm": {
                    **timing_stats(raw["pull_warm"], bench.total_bytes),
                    "split_median": median_split(raw["pull_warm_split"]),
                },
            }
        if profile:
            for name in STORES:
                stores[name]["profile"] = bench.profiled(name)
                log(f"profiled {name}")
        if end_to_end:
            for name in STORES:
                # The real command path: its own export, load, git describe and publish.
                started = time.perf_counter()
                publish_run(run, ModelRegistry(bench.stores[name].inner, MODEL))
                seconds = time.perf_counter() - started
                stores[name]["publish_run_end_to_end_s"] = seconds
                log(f"publish_run {name}: {seconds:.2f} s")
        results["stores"] = stores
    results["load_average_after"] = os.getloadavg()
    results["table"] = markdown_table(results)
    return results


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds through the finally blocks: the S3 server is stopped


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=Path("runs/full-default"), help="run dir")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tag", default="cpu", help="results file tag")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip publish_run timing")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile pass")
    args = parser.parse_args(argv)
    if not resolve_checkpoint_path(args.run).is_file():
        parser.error(f"no checkpoint in {args.run}")
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with seaweedfs() as running:
            print(f"SeaweedFS S3 on {running.server.endpoint}", flush=True)
            results = run_benchmark(
                args.run,
                running.server,
                server_pid=running.pid,
                repeats=args.repeats,
                end_to_end=not args.no_end_to_end,
                profile=not args.no_profile,
                log=lambda line: print(line, flush=True),
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    path = write_results(results, args.out, args.tag)
    print(results["table"])
    print(f"written {path}")
    return path


if __name__ == "__main__":
    main()
