"""The registry benchmark's S3 side: a SeaweedFS server started for one run (the test suite's
own server, tests/s3_server.py) and a store wrapper that clocks every operation of a real store
(benchmarks/registry_speed.py measures with both)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.registry import ObjectInfo, ObjectStore
from models.registry.store import OCTETS

# The SeaweedFS helpers of the test suite, reused so that the benchmark measures the very server
# the tests run against. They are private helpers of a test module (and importing it imports
# pytest, a dev dependency); that is accepted for a benchmark, which is a dev tool too.
from tests.s3_server import (
    PORT_TAKEN_MARKERS,
    START_ATTEMPTS,
    Credential,
    S3TestServer,
    _ServerExited,
    _start_weed,
    _stop,
    _tail,
    find_weed,
)

# --- the S3 server -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningServer:
    server: S3TestServer
    pid: int  # of ``weed mini``, one process: its CPU time is the server's


@contextlib.contextmanager
def seaweedfs() -> Iterator[RunningServer]:
    """A SeaweedFS S3 server on loopback for the block; stopped (and its data removed) after it.

    Started like the ``s3_server`` test fixture: new ports when one was taken meanwhile.
    """
    weed = find_weed()
    admin = Credential.generate("bench")
    root = Path(tempfile.mkdtemp(prefix="bench-seaweedfs-"))
    sockets = Path(tempfile.mkdtemp(prefix="weed-"))
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            attempt_root = root / f"attempt{attempt}"
            try:
                process, server = _start_weed(weed, attempt_root, sockets, admin, {})
                break
            except _ServerExited as exc:
                log_tail = _tail(attempt_root / "weed.log", 25)
                taken = any(marker in log_tail for marker in PORT_TAKEN_MARKERS)
                if taken and attempt < START_ATTEMPTS:
                    continue
                raise RuntimeError(f"SeaweedFS did not start: {exc}\n{log_tail}") from exc
            except Exception as exc:
                log_tail = _tail(attempt_root / "weed.log", 40)
                raise RuntimeError(f"SeaweedFS did not start: {exc}\n{log_tail}") from exc
        else:  # pragma: no cover - the loop either breaks or raises
            raise AssertionError("unreachable")
        try:
            yield RunningServer(server, process.pid)
        finally:
            _stop(process, server.ports)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)


def weed_version() -> str:
    """``weed version``'s first line (e.g. ``version 8000GB 4.48 pypi linux amd64``)."""
    try:
        out = subprocess.run(
            [find_weed(), "version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return (out.stdout.strip().splitlines() or ["unknown"])[0]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- a store that clocks itself ------------------------------------------------------------------


class TimedStore(ObjectStore):
    """Delegates to a real store, adding up the seconds spent in each of its operations.

    Streams are clocked per chunk (time inside the store's generator only), so a pull's store
    time excludes the registry writing and hashing each chunk. The overhead is two
    ``perf_counter`` calls per operation or per 1 MiB chunk.
    """

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.location = inner.location
        self.seconds: dict[str, float] = {}
        self.calls: Counter[str] = Counter()

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def _timed(self, op: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds[op] = self.seconds.get(op, 0.0) + time.perf_counter() - started
            self.calls[op] += 1

    def _timed_iter(self, op: str, source: Iterator[Any]) -> Iterator[Any]:
        self.calls[op] += 1
        try:
            while True:
                started = time.perf_counter()
                try:
                    item = next(source)
                except StopIteration:
                    return
                finally:
                    self.seconds[op] = self.seconds.get(op, 0.0) + time.perf_counter() - started
                yield item
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def ensure_ready(self, *, for_write: bool) -> None:
        self._timed("ensure_ready", lambda: self.inner.ensure_ready(for_write=for_write))

    def put_file(self, key: str, path: Path, content_type: str = OCTETS) -> None:
        self._timed("put_file", lambda: self.inner.put_file(key, path, content_type))

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str = "application/json",
    ) -> str:
        result: str = self._timed(
            "put_bytes",
            lambda: self.inner.put_bytes(
                key, data, if_absent=if_absent, if_match=if_match, content_type=content_type
            ),
        )
        return result

    def get_bytes(self, key: str) -> tuple[bytes, str]:
        result: tuple[bytes, str] = self._timed("get_bytes", lambda: self.inner.get_bytes(key))
        return result

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        return self._timed_iter("iter_chunks", self.inner.iter_chunks(key))

    def stat(self, key: str) -> ObjectInfo | None:
        result: ObjectInfo | None = self._timed("stat", lambda: self.inner.stat(key))
        return result

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self._timed_iter("list", self.inner.list(prefix))

    def delete(self, keys: Iterable[str]) -> None:
        self._timed("delete", lambda: self.inner.delete(keys))
