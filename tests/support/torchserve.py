"""Start a private TorchServe for tests and benchmarks, and stop it without leftovers.

``running_torchserve(model_store, mar_name, workdir)`` runs ``torchserve --start --foreground``
with ``config.properties`` from this package, its addresses replaced by free 127.0.0.1 ports, and
waits until ``GET /ping`` is healthy and the model's workers are READY. Everything the server
writes goes under ``workdir``: logs (LOG_LOCATION, METRICS_LOCATION, launcher output in a file,
never a pipe that could fill), and a private TMPDIR/TEMP. The latter matters: ``torchserve``
keeps its pid file in the temp dir (``--stop`` would stop whichever server that names, maybe
someone else's) and the frontend puts worker sockets and unpacked archives there.

The launcher, the Java frontend and the Python workers share one new process group, so stopping
sends SIGTERM to the group (what ``torchserve --stop`` sends the frontend), waits, and SIGKILLs
whatever is left: no stray java processes, even when startup failed half way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from serving.torchserve.healthcheck import worker_states
from tests.support.ports import free_port

CONFIG = Path(__file__).resolve().parents[2] / "serving" / "torchserve" / "config.properties"
PORT_KEYS = {
    "inference_address": "http://127.0.0.1:{port}",
    "management_address": "http://127.0.0.1:{port}",
    "metrics_address": "http://127.0.0.1:{port}",
    "grpc_inference_port": "{port}",
    "grpc_management_port": "{port}",
}
OVERRIDDEN = {*PORT_KEYS, "model_store", "load_models", "models"}
LAUNCHER_LOG = "launcher.log"  # the torchserve launcher's and the JVM's stdout/stderr
START_ATTEMPTS = 3
LOAD_FAILED = "Failed to load model"  # logged by ts.model_service_worker on a handler error
MAX_SOCKET_DIR = 80  # the frontend puts unix sockets (<= 107 bytes) in java.io.tmpdir


class TorchServeError(RuntimeError):
    """TorchServe did not come up (the message names the log to read)."""


@dataclass
class TorchServeProcess:
    """A running TorchServe; ``predictions_url`` is where /generate requests go."""

    model_name: str
    inference_url: str
    management_url: str
    metrics_url: str
    workdir: Path
    log_dir: Path
    process: subprocess.Popen[bytes]
    startup_s: float = 0.0
    # Where each log ended when this process started: a reused workdir keeps older runs' logs.
    log_offsets: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def predictions_url(self) -> str:
        return f"{self.inference_url}/predictions/{self.model_name}"

    def log_text(self, name: str) -> str:
        """What this run wrote to ``log_dir/name`` so far."""
        path = self.log_dir / name
        try:
            with open(path, "rb") as fh:
                fh.seek(self.log_offsets.get(name, 0))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The end of the frontend and model logs, for failure messages."""
        parts = []
        for name in ("ts_log.log", "model_log.log"):
            text = self.log_text(name).splitlines()[-lines:]
            if text:
                parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)

    def load_failure(self) -> str | None:
        """The handler's error if a worker failed to load the model (TorchServe would retry)."""
        failed = [
            line for line in self.log_text("model_log.log").splitlines() if LOAD_FAILED in line
        ]
        return failed[-1].split("MODEL_LOG - ", 1)[-1] if failed else None


def write_config(path: Path, ports: Mapping[str, int], base: Path = CONFIG) -> None:
    """``base`` with the addresses (and anything the command line sets) replaced."""
    kept = []
    for line in base.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if line.lstrip().startswith("#") or key not in OVERRIDDEN:
            kept.append(line)
    kept.append("# process.py: private ports")
    kept += [f"{key}={PORT_KEYS[key].format(port=port)}" for key, port in ports.items()]
    path.write_text("\n".join(kept) + "\n")


def archive_model_name(mar: Path) -> str:
    """The model name recorded in a .mar (TorchServe registers it under this name)."""
    with zipfile.ZipFile(mar) as archive:
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
    return str(manifest["model"]["modelName"])


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _ready(server: TorchServeProcess) -> bool:
    """Healthy frontend, and every worker of the model READY (at least one)."""
    try:
        status, body = _get(f"{server.inference_url}/ping")
        if status != 200 or json.loads(body).get("status") != "Healthy":
            return False
        states = worker_states(server.management_url, server.model_name, timeout_s=2.0)
    except (OSError, ValueError):
        return False
    return bool(states) and all(state == "READY" for state in states)


def _torchserve_command() -> list[str]:
    exe = shutil.which("torchserve", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "ts.model_server"]


def _socket_safe_tmp(workdir: Path) -> tuple[Path, bool]:
    """``workdir/tmp`` unless unix socket paths under it could get too long."""
    tmp = workdir / "tmp"
    if len(str(tmp.resolve())) <= MAX_SOCKET_DIR:
        tmp.mkdir(exist_ok=True)
        return tmp, False
    return Path(tempfile.mkdtemp(prefix="dcgan-ts-")), True


@contextlib.contextmanager
def running_torchserve(
    model_store: Path,
    mar_name: str,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout_s: float = 120.0,
) -> Iterator[TorchServeProcess]:
    """Serve ``model_store/mar_name`` until the block ends; raise TorchServeError if not ready.

    ``env`` is added to this process's environment for the server (e.g. DCGAN_SERVE_*).
    """
    model_store = Path(model_store).resolve()
    mar = model_store / mar_name
    if not mar.is_file():
        raise TorchServeError(f"{mar} does not exist: build it with `dcgan torchserve archive`")
    workdir = Path(workdir).resolve()
    log_dir = workdir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    tmp, tmp_is_private = _socket_safe_tmp(workdir)
    full_env = {
        **{k: v for k, v in os.environ.items() if k != "TS_CONFIG_FILE"},  # would beat our file
        **(env or {}),
        "LOG_LOCATION": str(log_dir),
        "METRICS_LOCATION": str(log_dir),
        "TMPDIR": str(tmp),
        "TEMP": str(tmp),
    }
    model_name = archive_model_name(mar)
    server: TorchServeProcess | None = None
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            server = _launch(model_store, mar_name, model_name, workdir, log_dir, full_env)
            try:
                _wait_ready(server, startup_timeout_s)
                break
            except _PortTaken:
                stop(server.process)
                if attempt == START_ATTEMPTS:
                    raise TorchServeError(
                        f"torchserve could not bind its ports in {START_ATTEMPTS} attempts; "
                        f"logs in {log_dir}"
                    ) from None
        assert server is not None
        yield server
    finally:
        if server is not None:
            stop(server.process)
        if tmp_is_private:
            shutil.rmtree(tmp, ignore_errors=True)


class _PortTaken(TorchServeError):
    """Another process took a port between choosing it and the frontend binding it: retry."""


def _launch(
    model_store: Path,
    mar_name: str,
    model_name: str,
    workdir: Path,
    log_dir: Path,
    env: dict[str, str],
) -> TorchServeProcess:
    ports = {key: free_port() for key in PORT_KEYS}
    config = workdir / "config.properties"
    write_config(config, ports)
    command = [
        *_torchserve_command(),
        "--start",
        "--foreground",
        "--ncs",
        "--disable-token-auth",
        "--ts-config",
        str(config),
        "--model-store",
        str(model_store),
        "--models",
        mar_name,
    ]
    offsets = {
        name: (log_dir / name).stat().st_size if (log_dir / name).is_file() else 0
        for name in (LAUNCHER_LOG, "ts_log.log", "model_log.log")
    }
    # A file, not a pipe: nobody reads the launcher's output while the tests run.
    with open(log_dir / LAUNCHER_LOG, "ab") as launcher_log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=launcher_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches java and workers
        )
    return TorchServeProcess(
        model_name=model_name,
        inference_url=f"http://127.0.0.1:{ports['inference_address']}",
        management_url=f"http://127.0.0.1:{ports['management_address']}",
        metrics_url=f"http://127.0.0.1:{ports['metrics_address']}",
        workdir=workdir,
        log_dir=log_dir,
        process=process,
        log_offsets=offsets,
    )


def _wait_ready(server: TorchServeProcess, timeout_s: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if server.process.poll() is not None:
            output = server.log_text(LAUNCHER_LOG) + server.log_text("ts_log.log")
            if "Address already in use" in output:
                raise _PortTaken(output)
            raise TorchServeError(
                f"torchserve exited with code {server.process.returncode} during startup; "
                f"logs in {server.log_dir}:\n{server.log_tail()}"
            )
        failure = server.load_failure()
        if failure is not None:
            raise TorchServeError(f"{failure}; logs in {server.log_dir}")
        if _ready(server):
            server.startup_s = time.monotonic() - started
            return
        time.sleep(0.25)
    raise TorchServeError(
        f"torchserve was not ready after {timeout_s:.0f} s; logs in {server.log_dir}:\n"
        f"{server.log_tail()}"
    )


def stop(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM the whole process group, wait, then SIGKILL what is left; reap the launcher."""
    pgid = process.pid  # start_new_session: the launcher leads its own group
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(pgid, process):
        time.sleep(0.1)
    if _group_alive(pgid, process):
        _signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and _group_alive(pgid, process):
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5.0)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int, process: subprocess.Popen[bytes]) -> bool:
    """Any live (non-zombie) member left? Reaps the launcher; reads /proc where there is one."""
    process.poll()
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return any(
        pgrp == pgid and state != "Z"
        for pgrp, state in (_group_and_state(entry) for entry in proc.iterdir())
    )


def _group_and_state(entry: Path) -> tuple[int, str]:
    """(process group, state letter) from /proc/<pid>/stat; (-1, "") if unreadable or gone."""
    if not entry.name.isdigit():
        return -1, ""
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return -1, ""
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[2]), fields[0]) if len(fields) > 2 else (-1, "")
