"""Real servers on loopback for the serving tests: the app under uvicorn, and a TCP proxy that
can be cut to make a real S3 server unreachable (a registry outage, over real sockets)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from tests.support.ports import free_port


@contextlib.contextmanager
def serving(app: FastAPI, *, ready: bool = True, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yield its base URL (after /readyz if ``ready``)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            assert thread.is_alive(), "uvicorn exited during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        if ready:
            wait_ready(url, deadline - time.monotonic())
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def dcgan_serve(
    registry: Path | str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    wrap: list[str] | None = None,
    ready: bool = True,
    **settings: str,
) -> Iterator[ServerProcess]:
    """``dcgan serve`` as its own process, as a user starts it: settings from the environment
    (``DCGAN_SERVE_<NAME>`` for each keyword); a registry directory is copied first, an
    ``s3://`` one is used as it is (``env`` then holds its ``DCGAN_S3_*``). ``wrap`` is put in
    front of the command (another user, another mount namespace). Yielded once ready, unless
    ``ready`` is False."""
    if isinstance(registry, Path):
        copy = tmp_path / "served-registry"
        shutil.copytree(registry, copy)
        registry = str(copy)
    port = free_port()
    full_env = {
        **os.environ,
        "DCGAN_REGISTRY_URI": registry,
        "DCGAN_REGISTRY_CACHE_DIR": str(tmp_path / "served-cache"),
        "DCGAN_SERVE_PORT": str(port),
        "DCGAN_SERVE_POLL_INTERVAL_S": "0",
        **(env or {}),
        **{f"DCGAN_SERVE_{name.upper()}": value for name, value in settings.items()},
    }
    log = tmp_path / "server.log"
    dcgan = Path(sys.executable).with_name("dcgan")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*(wrap or []), str(dcgan), "serve"], env=full_env, cwd="/", stderr=out
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        if ready:
            wait_ready(server.url, timeout_s=60)
        else:
            wait_answering(server.url, timeout_s=60)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def wait_answering(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} does not answer /healthz")


def wait_ready(url: str, timeout_s: float = 60.0, version: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            last = httpx.get(f"{url}/readyz", timeout=5)
            if last.status_code == 200 and version in (None, last.json()["version"]):
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready: {last.text if last is not None else 'no answer'}")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut()`` closes everything and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def restore(self) -> None:
        """Listen again on the same port after ``cut()``: the registry is back."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:  # cut() ran while this connection was being set up
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self._listener.close()
        for sock in sockets:
            # shutdown() first: close() alone does not wake a thread blocked in recv() on the
            # socket, so the connection would stay open and a kept-alive request would hang
            # until its read timeout instead of failing at once (seen in CI, stop 33).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
