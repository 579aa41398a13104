"""`docker compose up` for real: the CPU variant of the stack, with the TorchServe profile, on a
local Docker engine. The project's images are built from docker/*.Dockerfile; third-party images
are pulled, or replaced by stand-ins where no registry answers (tests/compose/images.py).

One scenario, as a user walks it: up -> every service healthy and the one-shots done -> the API
live but not ready -> `dcgan retrain` in the worker container (Prefect server, work pool,
deployment from prefect.yaml) -> the API follows the new production alias -> /generate ->
TorchServe serves the same bytes -> `down` and `up` again keep models, runs and flow history.

Skipped where no Docker engine answers (scripts/docker-engine.sh starts one where it can).
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models.registry.signing import raw_base64
from pipeline.settings import get_settings
from tests.compose.images import docker_engine_problem, ensure_images
from tests.compose.stack import Stack

APP_UID = "10001"
LONG_RUNNING = {
    "minio": "healthy",
    "postgres": "healthy",
    "redis": "healthy",
    "prefect-server": "healthy",
    "prefect-services": "healthy",
    "prefect-worker": "healthy",
    "api": "healthy",
}
ONE_SHOTS = {"minio-init": "exited 0", "prefect-migrate": "exited 0", "secrets-check": "exited 0"}
REQUEST = {"seed": 7, "batch_size": 20, "digits": 3, "format": "npy"}
RETRAIN = ["dcgan", "retrain", "--watch", "--force", "--limit", "1024", "--epochs", "1"]
RETRAIN += ["--set", "batch_size=64", "--set", "g_width=8", "--set", "d_width=8"]
RETRAIN += ["--eval-samples", "200", "--tstr-count", "0"]
FASHION = "cdcgan-fashion-mnist"
FASHION_RUN = "/app/.cache/fashion-run"  # in the trainer-cache volume, the worker's to write


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    problem = docker_engine_problem()
    if problem:
        pytest.skip(f"compose stack not run: {problem}")
    root = tmp_path_factory.mktemp("compose")
    env_file = root / "stack.env"
    secret = {
        "MINIO_ROOT_USER": f"root-{secrets.token_hex(4)}",
        "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(24),
        "DCGAN_S3_ACCESS_KEY": f"publisher-{secrets.token_hex(4)}",
        "DCGAN_S3_SECRET_KEY": secrets.token_urlsafe(24),
        "DCGAN_S3_READER_ACCESS_KEY": f"reader-{secrets.token_hex(4)}",
        "DCGAN_S3_READER_SECRET_KEY": secrets.token_urlsafe(24),
        "DCGAN_SERVE_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "PREFECT_API_AUTH_STRING": f"dcgan:{secrets.token_urlsafe(18)}",
    }
    signing_key = Ed25519PrivateKey.generate()  # what `dcgan keys env` prints, made in-process
    secret["DCGAN_REGISTRY_SIGNING_KEY"] = raw_base64(signing_key)
    secret["DCGAN_REGISTRY_TRUSTED_KEYS"] = raw_base64(signing_key.public_key())
    env_file.write_text("".join(f"{key}={value}\n" for key, value in secret.items()))
    mnist = get_settings().data_dir / "mnist"
    stack = Stack(f"dcgan-test-{secrets.token_hex(3)}", env_file, mnist.resolve())
    print(ensure_images(stack.config(), root / "images.log"))
    try:
        stack.run("up", "-d", "--no-build", timeout=600)
        yield stack
    finally:
        stack.run(
            "down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300, check=False
        )


WORKER_CACHE = "/app/.cache"  # the trainer-cache volume (docker-compose.yml)
# Run in a container with its own DCGAN_S3_* credential; prints the S3 error code of each try.
WRITE_ATTEMPTS = """
import io
from minio.error import S3Error
from models.s3 import make_client
client = make_client()
for attempt in (
    lambda: client.put_object("models", "cdcgan-mnist/aliases/x.json", io.BytesIO(b"{}"), 2),
    lambda: client.remove_object("models", "cdcgan-mnist/aliases/production.json"),
    lambda: client.put_object("datasets", "x", io.BytesIO(b"x"), 1),
):
    try:
        attempt()
        print("ALLOWED")
    except S3Error as exc:
        print(exc.code)
"""
BUCKET_ATTEMPT = """
from minio.error import S3Error
from models.s3 import make_client
try:
    make_client().make_bucket("not-allowed")
    print("ALLOWED")
except S3Error as exc:
    print(exc.code)
"""


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_compose_up_retrain_generate(
    stack: Stack, evaluation_classifier_file: Path, tmp_path: Path
) -> None:
    # 1. Everything up: long-running services healthy, the one-shot jobs done.
    stack.wait({**LONG_RUNNING, **ONE_SHOTS}, timeout_s=420)
    api = stack.url("api", 8000)
    # The evaluation classifier this session trained (same data, recipe and CPU), put in the
    # worker's cache as a warm cache would hold it: CI trains it once, not again in here.
    classifiers = f"{WORKER_CACHE}/classifiers"
    assert stack.exec("prefect-worker", "mkdir", "-p", classifiers).returncode == 0
    stack.run("cp", str(evaluation_classifier_file), f"prefect-worker:{classifiers}/")

    # Postgres's and Prefect's secrets were checked before they started; a placeholder is not.
    placeholder = stack.call(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "-e",
        "POSTGRES_PASSWORD=change-me-postgres-password",
        "secrets-check",
        timeout=120,
    )
    assert placeholder.returncode == 2, placeholder.stdout + placeholder.stderr
    output = placeholder.stdout + placeholder.stderr
    assert "error: POSTGRES_PASSWORD is a placeholder" in output, output

    # 2. Containers of the project run as the app user; the API's root file system is read-only.
    for service in ("api", "prefect-worker"):
        uid = stack.exec(service, "id", "-u")
        assert uid.stdout.strip() == APP_UID, (service, uid.stdout, uid.stderr)
    write = stack.exec("api", "touch", "/opt/venv/written")
    assert write.returncode != 0 and "Read-only file system" in write.stderr

    # 3. Live before any model exists, not ready.
    assert httpx.get(f"{api}/healthz", timeout=10).status_code == 200
    not_ready = httpx.get(f"{api}/readyz", timeout=10)
    assert not_ready.status_code == 503 and "production" in not_ready.json()["last_error"]

    # 4. Retrain through the Prefect deployment, from inside the worker container.
    retrain = stack.exec("prefect-worker", *RETRAIN, timeout=900)
    assert retrain.returncode == 0, retrain.stdout + retrain.stderr + stack.logs("prefect-worker")
    assert "published and promoted run-" in retrain.stdout, retrain.stdout
    version = retrain.stdout.split("published and promoted ")[1].split(":")[0]
    cached = stack.exec("prefect-worker", "ls", classifiers).stdout.split()
    weights = [name for name in cached if name.endswith(".pt")]
    assert weights == [evaluation_classifier_file.name], cached  # its key matched: no retraining
    assert any(name.endswith(".onnx") for name in cached), cached  # exported for the version
    flow_run_id = retrain.stdout.split(") scheduled")[0].rsplit("(", 1)[1]
    # The flow run signed it: a pull that trusts only the stack's key verifies and keeps it.
    pulled = stack.exec(
        "api",
        "dcgan",
        "models",
        "pull",
        version,
        "--file",
        "generator.onnx",
        "--cache-dir",
        "/tmp/pulled",
    )
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    listed = stack.exec("api", "ls", f"/tmp/pulled/cdcgan-mnist/{version}").stdout.split()
    assert sorted(listed) == ["generator.onnx", "manifest.json", "manifest.sig"], listed
    # Least privilege: the API's credential (minio-init's read-only user) cannot change the
    # registry, through the CLI or straight through the SDK, and the publisher's cannot make
    # buckets; neither container holds MinIO's root key.
    promote = stack.exec("api", "dcgan", "models", "promote", version, "--alias", "staging")
    assert promote.returncode == 2, promote.stdout + promote.stderr
    assert "may not write to this bucket" in promote.stderr, promote.stderr
    for service, script in {"api": WRITE_ATTEMPTS, "prefect-worker": BUCKET_ATTEMPT}.items():
        attempt = stack.exec(service, "python", "-c", script)
        assert attempt.returncode == 0, attempt.stdout + attempt.stderr
        assert attempt.stdout.split() and set(attempt.stdout.split()) == {"AccessDenied"}, (
            service,
            attempt.stdout,
        )
        environment = stack.exec(service, "env").stdout
        assert stack.env_value("MINIO_ROOT_PASSWORD") not in environment, service

    # 5. The API follows the alias (2 s polling here) and answers /generate with that version.
    ready = _wait_ready(api, version, timeout_s=120)
    assert ready["version"] == version
    answer = httpx.post(f"{api}/generate", json=REQUEST, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-model-version"] == version
    images = np.load(io.BytesIO(answer.content))
    served = httpx.get(f"{api}/models", timeout=10).json()
    # It serves both datasets' models: Fashion-MNIST's, not published yet, waits on its own.
    assert [(m["model"], m["ready"]) for m in served["models"]] == [
        ("cdcgan-mnist", True),
        ("cdcgan-fashion-mnist", False),
    ]
    fashion = httpx.post(f"{api}/generate", json={**REQUEST, "model": FASHION}, timeout=30)
    assert fashion.status_code == 503 and FASHION in fashion.json()["detail"]
    # Once it exists (a tiny run trained on the host, published by the worker with its key and
    # credential), the API serves it too, by name, beside MNIST's.
    stack.run("cp", str(_tiny_fashion_run(tmp_path)), f"prefect-worker:{WORKER_CACHE}/upload")
    copied = stack.exec("prefect-worker", "cp", "-r", f"{WORKER_CACHE}/upload", FASHION_RUN)
    assert copied.returncode == 0, copied.stderr
    published = stack.call(
        "exec", "-T", "-e", f"DCGAN_REGISTRY_MODEL_NAME={FASHION}", "prefect-worker",
        "dcgan", "publish", FASHION_RUN, "--promote", "--force", timeout=300,
    )  # fmt: skip
    assert published.returncode == 0, published.stdout + published.stderr
    shirts = _wait_served(api, FASHION, timeout_s=60)
    assert shirts.headers["x-model-name"] == FASHION and shirts.content != answer.content
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    bad = httpx.post(f"{api}/generate", json={**REQUEST, "batch_size": 0}, timeout=30)
    assert bad.status_code == 422 and "batch_size" in bad.json()["detail"]
    # The version carries its classifier: a filtered request is served (0: the same images).
    filtered = httpx.post(f"{api}/generate", json={**REQUEST, "min_confidence": 0}, timeout=60)
    assert filtered.status_code == 200, filtered.text
    assert filtered.content == answer.content and filtered.headers["x-filter-candidates"] == "20"

    # 6. TorchServe (profile) archives the same production version and answers the same bytes.
    stack.wait({"torchserve": "healthy"}, timeout_s=300)
    torchserve = stack.url("torchserve", 8080)
    served = httpx.post(f"{torchserve}/predictions/cdcgan-mnist", json=REQUEST, timeout=120)
    assert served.status_code == 200, served.text
    assert served.content == answer.content

    # 7. down + up (volumes kept): the model, the alias and the flow run survive.
    stack.run("down", "--timeout", "20", timeout=300)
    stack.run("up", "-d", "--no-build", timeout=600)
    stack.wait(LONG_RUNNING, timeout_s=420)
    api = stack.url("api", 8000)
    assert _wait_ready(api, version, timeout_s=120)["version"] == version
    again = httpx.post(f"{api}/generate", json=REQUEST, timeout=60)
    assert again.content == answer.content
    prefect = stack.url("prefect-server", 4200)
    assert httpx.get(f"{prefect}/api/flow_runs/{flow_run_id}", timeout=30).status_code == 401
    user, _, password = stack.env_value("PREFECT_API_AUTH_STRING").partition(":")
    flow_run = httpx.get(
        f"{prefect}/api/flow_runs/{flow_run_id}", auth=(user, password), timeout=30
    )
    assert flow_run.status_code == 200, flow_run.text
    assert flow_run.json()["state"]["type"] == "COMPLETED"


def _tiny_fashion_run(tmp_path: Path) -> Path:
    """A Fashion-MNIST generator trained for seconds on the real data: something to serve."""
    from pipeline.data.loading import load_dataset
    from pipeline.train import train
    from pipeline.train_config import TrainConfig

    cfg = TrainConfig(
        dataset="fashion-mnist", limit=512, epochs=1, batch_size=64, g_width=8, d_width=8
    )
    train(cfg, load_dataset("fashion-mnist"), tmp_path / "fashion-run", progress=False)
    return tmp_path / "fashion-run"


def _wait_served(api: str, model: str, timeout_s: float) -> httpx.Response:
    """/generate from ``model`` once the API's polling has loaded it."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.post(f"{api}/generate", json={**REQUEST, "model": model}, timeout=60)
        if answer.status_code == 200 or time.monotonic() > deadline:
            assert answer.status_code == 200, answer.text
            return answer
        time.sleep(1)


def _wait_ready(api: str, version: str, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{api}/readyz", timeout=10)
            last = answer.json()
            if answer.status_code == 200 and answer.json()["version"] == version:
                return dict(answer.json())
        except httpx.HTTPError as error:
            last = error
        time.sleep(1)
    raise AssertionError(f"API not ready with {version} after {timeout_s} s: {last}")
