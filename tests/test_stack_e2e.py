"""The stack's processes, natively on loopback: S3 (SeaweedFS), the Prefect server, a process
work pool with its worker, the deployment from prefect.yaml, and the API. `dcgan retrain`
triggers the deployment through the Prefect API; the worker trains on MNIST loaded into S3 by
the stack's own init script; the new version is published and promoted, and the API (following
the production alias) answers /generate with it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models.registry import ModelRegistry, S3Store
from models.registry.signing import ManifestVerifier, raw_base64
from tests.s3_server import S3TestServer, empty_and_remove_bucket
from tests.support.ports import free_port

# Evaluates with the default classifier: trained once per session, under a lock (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("evaluation_classifier_file")

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _exe(name: str) -> str:
    return shutil.which(name, path=str(BIN)) or name


@contextlib.contextmanager
def background(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=out)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def wait_http(url: str, timeout_s: float, log: Path, status: int = 200) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == status:
                return
        time.sleep(0.5)
    raise AssertionError(
        f"{url} did not answer {status} in {timeout_s} s:\n{log.read_text()[-3000:]}"
    )


def run(
    cmd: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _artifact(env: dict[str, str], key: str) -> dict[str, Any]:
    done = run([_exe("prefect"), "artifact", "inspect", key, "-o", "json"], env)
    latest: dict[str, Any] = json.loads(done.stdout)[0]
    return latest


@pytest.mark.slow
def test_retrain_through_prefect_server_worker_and_serve(
    s3_server: S3TestServer, tmp_path: Path
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DCGAN_"))}
    port = free_port()
    auth = f"dcgan:{secrets.token_urlsafe(18)}"  # the Prefect API's basic auth, as deployed
    signing_key = Ed25519PrivateKey.generate()  # the trainer signs, the API trusts
    env = {
        **base,
        **s3_server.env(),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
        "DCGAN_REGISTRY_URI": "s3://models",
        "DCGAN_REGISTRY_CACHE_DIR": str(tmp_path / "model-cache"),
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_API_AUTH_STRING": auth,
        "DCGAN_REGISTRY_TRUSTED_KEYS": raw_base64(signing_key.public_key()),
    }
    # Least privilege, as deployed: the trainer holds the publisher's credential, the API the
    # reader's; minio-init alone holds the admin's and checks the two users' rights.
    trainer_env = {
        **env,
        **s3_server.env("publisher"),
        "DCGAN_REGISTRY_SIGNING_KEY": raw_base64(signing_key),
    }
    init_env = dict(env)
    for name in ("publisher", "reader"):
        credential = s3_server.credential(name)
        init_env[f"DCGAN_INIT_{name.upper()}_ACCESS_KEY"] = credential.access_key
        init_env[f"DCGAN_INIT_{name.upper()}_SECRET_KEY"] = credential.secret_key
    client = s3_server.client()
    try:
        # The stack's one-shot init: buckets, the users' rights (SeaweedFS has no MinIO admin
        # API to make them with), and MNIST into s3://datasets/mnist/.
        init = run([sys.executable, "docker/minio-init.py"], init_env)
        assert "bucket models" in init.stdout and "datasets/mnist" in init.stdout
        assert "no MinIO admin API" in init.stdout, init.stdout
        for user in ("dcgan-publisher", "dcgan-reader"):
            assert f"user {user}: rights checked" in init.stdout, init.stdout

        server_cmd = [_exe("prefect"), "server", "start", "--host", "127.0.0.1"]
        server_cmd += ["--port", str(port)]
        with background(server_cmd, env, tmp_path / "server.log"):
            wait_http(f"http://127.0.0.1:{port}/api/health", 120, tmp_path / "server.log")
            anonymous = {k: v for k, v in env.items() if k != "PREFECT_API_AUTH_STRING"}
            refused = subprocess.run(
                [_exe("prefect"), "work-pool", "ls"], env=anonymous, capture_output=True, text=True
            )
            assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
            run([_exe("prefect"), "work-pool", "create", "gpu", "--type", "process"], env)

            # prefect.yaml as shipped, pulled from this checkout instead of the image's /app.
            spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
            spec["pull"] = [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
            ]
            prefect_file = tmp_path / "prefect.yaml"
            prefect_file.write_text(yaml.safe_dump(spec))
            deploy = [_exe("prefect"), "--no-prompt", "deploy", "--all"]
            run([*deploy, "--prefect-file", str(prefect_file)], env)

            api_port = free_port()
            api_env = {**env, **s3_server.env("reader"), "DCGAN_SERVE_PORT": str(api_port)}
            api_env["DCGAN_SERVE_POLL_INTERVAL_S"] = "0.5"
            api = f"http://127.0.0.1:{api_port}"
            worker_cmd = [_exe("prefect"), "worker", "start", "--pool", "gpu", "--type", "process"]
            with (
                background(worker_cmd, trainer_env, tmp_path / "worker.log"),
                background([_exe("dcgan"), "serve"], api_env, tmp_path / "api.log"),
            ):
                wait_http(f"{api}/healthz", 60, tmp_path / "api.log")
                assert httpx.get(f"{api}/readyz").status_code == 503  # no production model yet

                retrain = [_exe("dcgan"), "retrain", "--watch", "--force", "--limit", "512"]
                retrain += ["--epochs", "1", "--set", "batch_size=64", "--set", "g_width=8"]
                retrain += ["--set", "d_width=8"]  # data: the deployment's (prefect.yaml)
                retrain += ["--eval-samples", "200", "--tstr-count", "0"]
                try:
                    done = run(retrain, env, timeout=600)
                except AssertionError:
                    print((tmp_path / "worker.log").read_text()[-5000:])
                    raise
                assert f"http://127.0.0.1:{port}/runs/flow-run/" in done.stdout
                assert "Completed: published and promoted run-" in done.stdout, done.stdout

                verifier = ManifestVerifier.from_setting([env["DCGAN_REGISTRY_TRUSTED_KEYS"]])
                registry = ModelRegistry(
                    S3Store("models", s3_server.settings()), "cdcgan-mnist", verifier=verifier
                )
                version = registry.get_alias("production").version
                manifest = registry.show(version)
                # --set options are merged into the deployment's config, not replacing it.
                assert manifest.training_config["data"] == "s3://datasets/mnist"
                assert manifest.extra["promotion"]["reason"] == "forced"

                # What the Prefect UI shows: the report, the epoch table, the samples' link.
                report = _artifact(env, "dcgan-report")
                assert f"version `{version}`" in report["data"] and "forced" in report["data"]
                assert "| accuracy |" in report["data"]
                # The independent classifier's second opinion, measured (a number, not "-").
                assert re.search(r"\| independent\.accuracy \| [0-9.e-]+ \|", report["data"])
                assert "loss_d" in _artifact(env, "dcgan-epochs")["data"]
                link = _artifact(env, "dcgan-samples")["data"]
                url = link[link.index("(") + 1 : link.rindex(")")]  # [text](presigned URL)
                png = httpx.get(url, timeout=30)
                assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

                wait_http(f"{api}/readyz", 60, tmp_path / "api.log")
                body = {"seed": 7, "batch_size": 16, "digits": 3, "format": "npy"}
                answer = httpx.post(f"{api}/generate", json=body, timeout=60)
                assert answer.status_code == 200 and answer.headers["x-model-version"] == version
                assert np.load(io.BytesIO(answer.content)).shape == (16, 28, 28)
    finally:
        for bucket in ("models", "datasets"):
            if client.bucket_exists(bucket):
                empty_and_remove_bucket(client, bucket)
