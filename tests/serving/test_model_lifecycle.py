"""The model lifecycle against real failures: a registry outage at start and during serving (a real
S3 server behind a proxy that is cut), a tampered cache, a full disk (a real tmpfs in a mount
namespace), a cache this process may not write (another user), a version that runs out of memory
in ONNX Runtime, only the served files pulled, and old versions pruned from the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest
from onnx import TensorProto, helper

from models.registry import ModelRegistry, S3Store
from serving.api.app import create_app
from tests.s3_server import S3TestServer
from tests.serving.conftest import MODEL, TOKEN, settings
from tests.serving.live import TcpProxy, dcgan_serve, serving, wait_ready

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"seed": 3, "batch_size": 8, "format": "npy"}


def post(url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/generate", json=body, timeout=60)


def readyz(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=10)


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def s3_registry(published_registry: Path, s3_server: S3TestServer, s3_bucket: str) -> str:
    """The published registry (v1 production, v2) copied into a fresh bucket; its s3:// URI."""
    client = s3_server.client()
    for path in sorted(published_registry.rglob("*")):
        if path.is_file():
            key = path.relative_to(published_registry).as_posix()
            client.fput_object(s3_bucket, key, str(path))
    return f"s3://{s3_bucket}"


@pytest.fixture
def proxy(s3_server: S3TestServer) -> Iterator[TcpProxy]:
    host, port = s3_server.endpoint.split(":")
    proxy = TcpProxy(host, int(port))
    yield proxy
    proxy.cut()


def proxied_registry(s3_server: S3TestServer, proxy: TcpProxy, bucket: str) -> ModelRegistry:
    # The server's own credential is read-only, as in the stack (least privilege).
    # Short timeouts: a connection caught mid-request by cut() must fail within the test's wait,
    # not after the 60 s default read timeout (CI, stop 33).
    s3 = s3_server.settings(
        "reader", endpoint=proxy.endpoint, max_retries=0, connect_timeout_s=2, read_timeout_s=5
    )
    return ModelRegistry(S3Store(bucket, s3), MODEL)


def direct_registry(s3_server: S3TestServer, bucket: str) -> ModelRegistry:
    return ModelRegistry(S3Store(bucket, s3_server.settings("publisher")), MODEL)


def test_a_registry_outage_never_stops_serving(
    s3_registry: str, s3_server: S3TestServer, proxy: TcpProxy, tmp_path: Path
) -> None:
    registry = proxied_registry(s3_server, proxy, s3_registry.removeprefix("s3://"))
    app = create_app(settings(poll_interval_s=0.1), registry, cache_dir=tmp_path / "c")
    with serving(app) as base:
        proxy.cut()
        wait_for(lambda: readyz(base).json()["error_kind"] == "registry_unreachable")
        for _ in range(5):
            response = post(base, BODY)
            assert response.status_code == 200 and response.headers["x-model-version"] == "v1"
        ready = readyz(base)
        assert ready.status_code == 200 and ready.json()["version"] == "v1"
        assert ready.json()["source"] == "registry"  # loaded from it before the outage
        reload = httpx.post(f"{base}/admin/reload", headers=AUTH, timeout=60)
        assert reload.status_code == 503 and "registry unreachable" in reload.json()["detail"]
        assert "still serving v1" in reload.json()["detail"]


def test_a_server_started_during_an_outage_serves_its_last_verified_version_from_the_cache(
    s3_registry: str, s3_server: S3TestServer, proxy: TcpProxy, tmp_path: Path
) -> None:
    bucket = s3_registry.removeprefix("s3://")
    registry = proxied_registry(s3_server, proxy, bucket)
    cache = tmp_path / "cache"
    with serving(create_app(settings(), registry, cache_dir=cache)) as base:
        before = post(base, BODY)
        assert readyz(base).json()["source"] == "registry"
    published = set(registry.show("v1").files)
    assert "checkpoint.pt" in published  # the version has more than the server needs ...
    pulled = {p.name for p in (cache / MODEL / "v1").iterdir()}
    assert pulled == {"generator.onnx", "manifest.json"}  # ... and it pulled only what it serves

    proxy.cut()
    app = create_app(settings(poll_interval_s=0.1), registry, cache_dir=cache)
    with serving(app) as base:
        ready = readyz(base)
        body = ready.json()
        assert ready.status_code == 200, body
        assert body["version"] == "v1" and body["source"] == "cache"
        assert body["error_kind"] == "registry_unreachable"
        assert "serving version v1 from the local cache" in body["last_error"]
        metrics = httpx.get(f"{base}/metrics").text
        assert 'dcgan_model_served_from_cache{model="cdcgan-mnist"} 1.0' in metrics
        failures = (
            'dcgan_model_load_failures_total{kind="registry_unreachable",model="cdcgan-mnist"}'
        )
        assert failures in metrics
        again = post(base, BODY)
        assert again.status_code == 200 and again.content == before.content

        direct_registry(s3_server, bucket).promote("v2")  # moved while this server could not see
        proxy.restore()
        wait_ready(base, version="v2")
        body = readyz(base).json()
        assert body["source"] == "registry" and body["last_error"] is None
        cached = 'dcgan_model_served_from_cache{model="cdcgan-mnist"} 0.0'
        assert cached in httpx.get(f"{base}/metrics").text
        assert post(base, BODY).headers["x-model-version"] == "v2"


def test_a_tampered_cache_is_not_served_during_an_outage(
    s3_registry: str, s3_server: S3TestServer, proxy: TcpProxy, tmp_path: Path
) -> None:
    registry = proxied_registry(s3_server, proxy, s3_registry.removeprefix("s3://"))
    cache = tmp_path / "cache"
    with serving(create_app(settings(), registry, cache_dir=cache)):
        pass
    onnx_file = cache / MODEL / "v1" / "generator.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))

    proxy.cut()
    app = create_app(settings(poll_interval_s=0.1), registry, cache_dir=cache)
    with serving(app, ready=False) as base:
        wait_for(lambda: "failed verification" in (readyz(base).json()["last_error"] or ""))
        ready = readyz(base)
        assert ready.status_code == 503 and ready.json()["error_kind"] == "registry_unreachable"
        assert post(base, BODY).status_code == 503


def test_only_the_served_file_is_pulled_and_old_versions_leave_the_cache(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    pulled = registry.pull("v1", tmp_path / "pulled", files=["generator.onnx"])
    registry.publish(
        {"generator.onnx": pulled / "generator.onnx"},
        version="v3",
        signature=registry.show("v1").signature,
    )
    cache = tmp_path / "cache"
    app = create_app(settings(poll_interval_s=0.1, cache_versions=2), registry, cache_dir=cache)

    def cached() -> set[str]:
        return {p.name for p in (cache / MODEL).iterdir() if not p.name.startswith(".")}

    with serving(app) as base:
        for version, expected in (("v2", {"v1", "v2"}), ("v3", {"v2", "v3"}), ("v1", {"v3", "v1"})):
            registry.promote(version)
            wait_ready(base, version=version)
            assert cached() == expected
            assert post(base, BODY).headers["x-model-version"] == version
        assert json.loads((cache / MODEL / ".alias-production.json").read_text())["version"] == "v1"


def _allocation_failing_generator(path: Path, latent_dim: int, output_name: str) -> None:
    """A generator-shaped ONNX model with a 2**46-byte output: ONNX Runtime cannot allocate it."""
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", latent_dim])
    labels = helper.make_tensor_value_info("labels", TensorProto.INT64, ["N"])
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1 << 20, 1, 1 << 12, 1 << 12])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    nodes = [
        helper.make_node("Constant", [], ["huge_shape"], value=shape),
        helper.make_node("ConstantOfShape", ["huge_shape"], [output_name], value=zero),
    ]
    graph = helper.make_graph(nodes, "out_of_memory", [z, labels], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_a_version_that_runs_out_of_memory_is_retried_not_refused(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    signature = registry.show("v1").signature
    source = tmp_path / "generator.onnx"
    _allocation_failing_generator(source, signature["latent_dim"], "images")
    registry.publish({"generator.onnx": source}, version="v9", signature=signature)
    app = create_app(settings(poll_interval_s=0.1), registry, cache_dir=tmp_path / "cache")
    with serving(app) as base:
        registry.promote("v9")
        reload = httpx.post(f"{base}/admin/reload", headers=AUTH, timeout=60)
        detail = reload.json()["detail"]
        assert reload.status_code == 503 and detail.startswith(f"{MODEL}: out of memory"), detail
        assert "still serving v1" in detail
        failed = 'dcgan_model_reloads_total{model="cdcgan-mnist",outcome="failed"}'

        def failures() -> float:
            for line in httpx.get(f"{base}/metrics").text.splitlines():
                if line.startswith(failed):
                    return float(line.split()[-1])
            return 0.0

        seen = failures()
        wait_for(lambda: failures() >= seen + 3)  # polling keeps trying the version ...
        body = readyz(base).json()
        assert body["error_kind"] == "out_of_memory"  # ... and never files it as refused
        assert body["version"] == "v1" and post(base, BODY).status_code == 200


# -- disk full and permission denied, on a real file system, in a real server process -----------


def _can(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


FULL_TMPFS = (
    'mount -t tmpfs -o size=1m tmpfs "$0" || exit 97; '
    'head -c 2000000 /dev/zero > "$0/filler" 2>/dev/null; exec "$@"'
)


def test_a_full_disk_is_reported_as_such_and_retried(
    s3_registry: str, s3_server: S3TestServer, tmp_path: Path
) -> None:
    unshare = ["unshare", "--user", "--map-root-user", "--mount"]
    probe = [*unshare, "sh", "-c", "mount -t tmpfs tmpfs /mnt"]
    if shutil.which("unshare") is None or not _can(probe):
        pytest.skip("needs unshare with user and mount namespaces (util-linux) to mount a tmpfs")
    cache = tmp_path / "served-cache"
    cache.mkdir()
    wrap = [*unshare, "sh", "-c", FULL_TMPFS, str(cache)]
    with dcgan_serve(
        s3_registry, tmp_path, env=s3_server.env(), wrap=wrap, ready=False, poll_interval_s="0.2"
    ) as server:
        wait_for(lambda: readyz(server.url).json()["error_kind"] is not None)
        body = readyz(server.url).json()
        assert body["error_kind"] == "disk_full", body
        assert "No space left on device" in body["last_error"] and str(cache) in body["last_error"]
        assert "registry unreachable" not in body["last_error"]
        # Free space inside the server's mount namespace: the next poll loads the model.
        (Path(f"/proc/{server.process.pid}/root") / cache.relative_to("/") / "filler").unlink()
        wait_ready(server.url, version="v1")
        assert post(server.url, BODY).status_code == 200


def test_a_cache_it_may_not_write_is_reported_as_such_and_retried(
    s3_registry: str, s3_server: S3TestServer, tmp_path: Path
) -> None:
    wrap: list[str] = []
    if os.geteuid() == 0:  # root writes anywhere: serve as nobody, as the API image does
        wrap = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if not _can([*wrap, "true"]):
            pytest.skip("needs setpriv (util-linux) to run the server as another user")
    parent = Path(tempfile.mkdtemp(prefix="dcgan-cache-"))  # outside root's 0700 pytest dir
    try:
        parent.chmod(0o555)  # others may enter it, nobody may create the cache in it
        env = {**s3_server.env(), "DCGAN_REGISTRY_CACHE_DIR": str(parent / "cache")}
        with dcgan_serve(
            s3_registry, tmp_path, env=env, wrap=wrap, ready=False, poll_interval_s="0.2"
        ) as server:
            wait_for(lambda: readyz(server.url).json()["error_kind"] is not None)
            body = readyz(server.url).json()
            assert body["error_kind"] == "permission_denied", body
            assert "Permission denied" in body["last_error"] and str(parent) in body["last_error"]
            parent.chmod(0o777)
            wait_ready(server.url, version="v1")
    finally:
        parent.chmod(0o755)
        shutil.rmtree(parent, ignore_errors=True)
