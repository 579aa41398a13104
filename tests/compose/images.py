"""The images `docker compose up` needs, made available to a local Docker engine.

The project's own images (API CPU variant, trainer/worker, TorchServe) are always built from
docker/*.Dockerfile, so the test exercises the real Dockerfiles. The third-party images
(MinIO, PostgreSQL, Redis, Prefect) and the Python base are pulled where a registry answers;
where none does (this project's offline sandbox and CI: only PyPI and Debian's packages are
reachable), stand-ins are built instead: a Debian bookworm root file system (mmdebstrap) for the
Python base, and tests/compose/standins/*.Dockerfile tagged with the names the compose file
uses. Stand-ins carry the label `dcgan.standin=true`.

    python -m tests.compose.images      # build or pull everything, print what was used
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).with_name("standins")
CONSTRAINTS = REPO / ".ci" / "constraints.txt"
PYTHON_BASE = "python:3.11-slim-bookworm"
STANDIN_BASE = "dcgan-standin/python:3.11-bookworm"
STANDIN_LABEL = "dcgan.standin"  # = "true" on every stand-in and what is built on one
# On a third-party stand-in: the digest of tests/compose/standins it was built from, so an edit
# there rebuilds it instead of leaving a stale one in use.
STANDIN_SOURCE_LABEL = "dcgan.standin.source"
# Which stand-in Dockerfile replaces which third-party repository.
STANDIN_FOR = {
    "minio/minio": "minio",
    "postgres": "postgres",
    "redis": "redis",
    "prefecthq/prefect": "prefect",
}
TORCH_VERSION = "2.13.0"
TORCH_INDEX_PORT = 38765
PULL_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 1200


class ImageError(RuntimeError):
    """An image could be neither pulled nor built."""


def _run(
    cmd: list[str], timeout: float, log: Path | None = None, env: dict[str, str] | None = None
) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if log is not None:
        with open(log, "a") as out:
            out.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise ImageError(f"{' '.join(cmd[:4])}... exited {done.returncode}:\n{tail}")
    return str(done.stdout)


def docker_engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (scripts/docker-engine.sh installs one)"
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return f"no Docker engine answers: {done.stderr.strip().splitlines()[-1:]}"
    return None


@functools.cache
def _build_env() -> dict[str, str]:
    """BuildKit where the buildx plugin exists; else the classic builder (it ignores `# syntax`)."""
    env = dict(os.environ)
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
        env["DOCKER_BUILDKIT"] = "0"
    return env


def have_image(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def _label(ref: str, name: str) -> str:
    label = f'{{{{index .Config.Labels "{name}"}}}}'
    inspect = ["docker", "image", "inspect", "-f", label, ref]
    return subprocess.run(inspect, capture_output=True, text=True).stdout.strip()


def is_standin(ref: str) -> bool:
    return _label(ref, STANDIN_LABEL) == "true"


def standins_digest() -> str:
    """sha256 over the names and contents of tests/compose/standins."""
    digest = hashlib.sha256()
    for path in sorted(STANDINS.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STANDINS).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def try_pull(ref: str, log: Path) -> bool:
    try:
        _run(["docker", "pull", "-q", ref], PULL_TIMEOUT_S, log)
    except (ImageError, subprocess.TimeoutExpired):
        return False
    return True


def build(
    dockerfile: Path,
    tag: str,
    log: Path,
    context: Path = REPO,
    target: str | None = None,
    args: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    cmd = ["docker", "build", "-q", "--network", "host", "-f", str(dockerfile), "-t", tag]
    for key, value in (labels or {}).items():
        cmd += ["--label", f"{key}={value}"]
    if target:
        cmd += ["--target", target]
    for key, value in (args or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    _run([*cmd, str(context)], BUILD_TIMEOUT_S, log, env=_build_env())


def standin_base(log: Path) -> str:
    """A Debian bookworm image with Python 3.11, venv, useradd and this machine's CA bundle (pip
    behind a TLS-inspecting proxy needs it), in place of python:3.11-slim-bookworm."""
    if have_image(STANDIN_BASE):
        return STANDIN_BASE
    if shutil.which("mmdebstrap") is None:
        raise ImageError(
            "mmdebstrap is needed for the offline base image: apt-get install mmdebstrap"
        )
    packages = "python3,python3-venv,python-is-python3,ca-certificates,passwd"
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={packages}"]
        _run([*cmd, "bookworm", str(rootfs)], 900, log)
        raw = f"{STANDIN_BASE}-raw"
        _run(["docker", "import", str(rootfs), raw], 300, log)
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", Path(tmp) / "host-ca.crt")
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {raw}\n"
            f"LABEL {STANDIN_LABEL}=true\n"
            "ENV LANG=C.UTF-8\n"
            "COPY host-ca.crt /usr/local/share/ca-certificates/host-ca.crt\n"
            "RUN update-ca-certificates >/dev/null\n"
            'CMD ["python3"]\n'
        )
        build(Path(tmp) / "Dockerfile", STANDIN_BASE, log, context=Path(tmp))
    return STANDIN_BASE


def python_base(log: Path) -> tuple[str, bool]:
    """The Python base image for the project's Dockerfiles, and whether it is a stand-in."""
    if have_image(PYTHON_BASE) or try_pull(PYTHON_BASE, log):
        return PYTHON_BASE, False
    return standin_base(log), True


def third_party(ref: str, base: str, log: Path) -> str:
    """`ref` itself when present or pullable, else its stand-in built and tagged as `ref`."""
    source = standins_digest()
    if have_image(ref):
        if not is_standin(ref):
            return "present"
        if _label(ref, STANDIN_SOURCE_LABEL) == source:
            return "stand-in, present"
    if try_pull(ref, log):
        return "pulled"
    repository = ref.rsplit(":", 1)[0]
    if repository not in STANDIN_FOR:
        raise ImageError(f"{ref}: cannot be pulled and no stand-in exists for {repository}")
    name = STANDIN_FOR[repository]
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "context"
        shutil.copytree(STANDINS, context)
        shutil.copy(CONSTRAINTS, context / "constraints.txt")
        build(
            context / f"{name}.Dockerfile",
            ref,
            log,
            context=context,
            args={"BASE": base},
            labels={STANDIN_SOURCE_LABEL: source},
        )
    return "stand-in, built"


@contextlib.contextmanager
def local_torch_index(log: Path) -> Iterator[str]:
    """A PEP 503 index on 127.0.0.1 holding torch (CPU build, as pip resolves it on this
    machine) and its requirements, for the Dockerfiles' TORCH_INDEX_URL when the PyTorch index
    is out of reach. Builds run with --network host, so they reach it.

    The URL is a build argument, part of the layer cache key: the wheels are kept between runs
    and the index is served on a fixed port where it is free, so unchanged layers stay cached.
    """
    root = Path(tempfile.gettempdir()) / f"dcgan-torch-index-{TORCH_VERSION}"
    files = root / "files"
    if not any(files.glob(f"torch-{TORCH_VERSION}*.whl")):
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:"]
        _run([*cmd, "-d", str(files), f"torch=={TORCH_VERSION}"], 900, log)
    projects: dict[str, list[str]] = {}
    for wheel in sorted(p.name for p in files.glob("*.whl")):
        project = re.sub(r"[-_.]+", "-", wheel.split("-")[0]).lower()  # PEP 503 name
        projects.setdefault(project, []).append(wheel)
    for project, wheels in projects.items():
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("".join(f'<a href="../../files/{w}">{w}</a>\n' for w in wheels))
    handler = functools.partial(_QuietHandler, directory=str(root))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", TORCH_INDEX_PORT), handler)
    except OSError:  # taken: any free port (the torch layers then rebuild once)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def compose_images(config: dict[str, object]) -> tuple[set[str], dict[str, dict[str, str]]]:
    """Third-party images, and the project's images with their build settings, of a rendered
    compose model (`docker compose config --format json`)."""
    pulled: set[str] = set()
    built: dict[str, dict[str, str]] = {}
    services = config["services"]
    assert isinstance(services, dict)
    for service in services.values():
        build_spec = service.get("build")
        if build_spec is None:
            pulled.add(service["image"])
        else:
            spec = {"dockerfile": build_spec["dockerfile"]}
            if build_spec.get("target"):
                spec["target"] = build_spec["target"]
            built[service["image"]] = spec
    return pulled, built


def ensure_images(config: dict[str, object], log: Path) -> dict[str, str]:
    """Make every image of the rendered compose model available; returns image -> how."""
    base, offline = python_base(log)
    pulled, built = compose_images(config)
    how = {ref: third_party(ref, base, log) for ref in sorted(pulled)}
    with contextlib.ExitStack() as stack:
        torch_index = stack.enter_context(local_torch_index(log)) if offline else None
        for ref, spec in sorted(built.items()):
            args = {"PYTHON_IMAGE": base}
            if torch_index and "ARG TORCH_INDEX_URL" in _dockerfile_text(spec["dockerfile"]):
                args["TORCH_INDEX_URL"] = torch_index
            build(REPO / spec["dockerfile"], ref, log, target=spec.get("target"), args=args)
            how[ref] = "built" + (" on the stand-in base" if offline else "")
    return how


@functools.cache
def _dockerfile_text(relative: str) -> str:
    return (REPO / relative).read_text()


def main() -> int:
    from tests.compose.stack import ENV_EXAMPLE, Stack  # the compose command line and files

    log = Path(tempfile.gettempdir()) / "dcgan-compose-images.log"
    log.unlink(missing_ok=True)
    problem = docker_engine_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # The placeholder .env.example is enough to render the model and list its images.
    config = Stack("dcgan-render", ENV_EXAMPLE, Path("/nonexistent")).config()
    for ref, how in ensure_images(config, log).items():
        print(f"{how:>30}  {ref}")
    print(f"log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
