"""The /generate service over real HTTP: endpoints, validation, determinism, batching, lifecycle."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from models.contract import GeneratorSignature
from models.registry import ModelRegistry
from serving.api.app import create_app
from serving.core.errors import ModelLoadError
from serving.core.lifecycle import warm_up
from tests.serving.conftest import MODEL, TOKEN, Reference, settings
from tests.serving.live import serving, wait_ready


@pytest.fixture
def url(registry: ModelRegistry, tmp_path: Path) -> Iterator[str]:
    with serving(create_app(settings(), registry, cache_dir=tmp_path / "cache")) as base:
        yield base


def post(url: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60, **kwargs)


def npy(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    images: np.ndarray = np.load(io.BytesIO(response.content), allow_pickle=False)
    return images


# -- answers ---------------------------------------------------------------------------------------


def test_generate_npy_is_the_models_output_to_the_byte(url: str, reference: Reference) -> None:
    response = post(url, "/generate", {"seed": 7, "batch_size": 64, "digits": 3, "format": "npy"})
    images = npy(response)
    assert images.dtype == np.uint8 and images.shape == (64, 28, 28)
    assert response.headers["content-type"] == "application/x-npy"
    assert response.headers["x-model-name"] == MODEL
    assert response.headers["x-model-version"] == "v1"
    assert response.headers["x-seed"] == "7"
    np.testing.assert_array_equal(images, reference("v1", 7, 64, 3))
    assert len(np.unique(images)) > 5  # the model's output, not a constant


def test_same_request_same_bytes_and_smaller_batches_are_prefixes(url: str) -> None:
    def body(n: int) -> dict[str, Any]:
        return {"seed": 123456789, "batch_size": n, "format": "npy"}

    first = post(url, "/generate", body(100)).content
    assert post(url, "/generate", body(100)).content == first
    full = npy(post(url, "/generate", body(100)))
    for n in (1, 9, 64):
        np.testing.assert_array_equal(npy(post(url, "/generate", body(n))), full[:n])
    other = npy(post(url, "/generate", {**body(100), "seed": 123456790}))
    assert not np.array_equal(other, full)


def test_json_format_has_labels_and_a_png_per_image(url: str, reference: Reference) -> None:
    response = post(url, "/generate", {"seed": 3, "batch_size": 12, "format": "json"})
    assert response.status_code == 200
    data = response.json()
    assert data["labels"] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert (data["model"], data["version"], data["seed"], data["batch_size"]) == (
        MODEL,
        "v1",
        3,
        12,
    )
    pixels = np.stack([_png(base64.b64decode(p)) for p in data["images"]])
    np.testing.assert_array_equal(pixels, reference("v1", 3, 12))


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def test_digits_one_per_image(url: str, reference: Reference) -> None:
    digits = [9, 9, 1, 0, 4]
    response = post(url, "/generate", {"seed": 5, "batch_size": 5, "digits": digits})
    assert response.json()["labels"] == digits
    images = npy(
        post(url, "/generate", {"seed": 5, "batch_size": 5, "digits": digits, "format": "npy"})
    )
    np.testing.assert_array_equal(images, reference("v1", 5, 5, digits))


def test_png_grid_and_get_for_browsers(url: str, reference: Reference) -> None:
    response = httpx.get(f"{url}/generate?seed=11&batch_size=20&digits=4&format=png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    grid = _png(response.content)
    assert grid.shape == (2 * 30 + 2, 10 * 30 + 2)
    expected = reference("v1", 11, 20, 4)
    np.testing.assert_array_equal(grid[2:30, 2:30], expected[0])
    np.testing.assert_array_equal(grid[32:60, 32:60], expected[11])
    get = httpx.get(
        f"{url}/generate", params={"seed": 11, "batch_size": 3, "digits": "1,2,3", "format": "npy"}
    )
    np.testing.assert_array_equal(npy(get), reference("v1", 11, 3, [1, 2, 3]))


def test_a_seed_is_drawn_when_omitted_and_reported(url: str, reference: Reference) -> None:
    response = post(url, "/generate", {"batch_size": 4, "format": "npy"})
    seed = int(response.headers["x-seed"])
    np.testing.assert_array_equal(npy(response), reference("v1", seed, 4))


def test_balance_fills_every_class_up_to_the_target(url: str, reference: Reference) -> None:
    counts = [50, 3, 50, 0, 50, 50, 45, 50, 50, 50]
    response = post(url, "/balance", {"counts": counts, "seed": 9})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npz"
    with np.load(io.BytesIO(response.content)) as npz:
        images, labels = npz["images"], npz["labels"]
    assert np.bincount(labels, minlength=10).tolist() == [0, 47, 0, 50, 0, 0, 5, 0, 0, 0]
    np.testing.assert_array_equal(images, reference("v1", 9, len(labels), labels.tolist()))
    target = post(url, "/balance", {"counts": {"3": 10}, "target": {"3": 15, "7": 2}})
    with np.load(io.BytesIO(target.content)) as npz:
        assert np.bincount(npz["labels"], minlength=10).tolist() == [0, 0, 0, 5, 0, 0, 0, 2, 0, 0]


def test_models_health_gallery_docs_and_metrics(url: str) -> None:
    served = httpx.get(f"{url}/models").json()
    assert served["default"] == MODEL and len(served["models"]) == 1
    (info,) = served["models"]
    assert info == httpx.get(f"{url}/models/{MODEL}").json()
    # Public: what a client needs, nothing about the deployment (files, config, backend).
    assert set(info) == {"model", "alias", "ready", "version", "signature", "metrics"}
    assert info["version"] == "v1" and info["alias"] == "production" and info["ready"]
    assert info["signature"]["latent_dim"] == 100 and isinstance(info["metrics"], dict)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{url}/admin/model").status_code == 401
    details = httpx.get(f"{url}/admin/model", headers=auth).json()
    assert set(details["manifest"]["files"]) >= {"generator.onnx", "generator.torchscript.pt"}
    assert details["backend"]["providers"] == ["CPUExecutionProvider"]
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json()["version"] == "v1"
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "/generate?digits=9" in page.text and "v1" in page.text
    assert "/generate" in httpx.get(f"{url}/openapi.json").json()["paths"]
    assert httpx.get(f"{url}/docs").status_code == 200
    post(url, "/generate", {"batch_size": 3})
    post(url, "/generate", {"batch_size": 0})
    text = httpx.get(f"{url}/metrics").text
    assert 'dcgan_requests_total{route="/generate",status="200"} 1.0' in text
    assert 'dcgan_requests_total{route="/generate",status="422"} 1.0' in text
    assert 'dcgan_images_generated_total{model="cdcgan-mnist",route="/generate"} 3.0' in text
    assert 'dcgan_model_info{model="cdcgan-mnist",version="v1"} 1.0' in text
    assert "dcgan_request_seconds_bucket" in text


# -- validation: 4xx with a message, never a 5xx ---------------------------------------------------

BAD_BODIES = [
    ({"batch_size": 0}, 422, "batch_size"),
    ({"batch_size": 1025}, 422, "above this server's limit 1024"),
    ({"batch_size": "10"}, 422, "batch_size"),
    ({"batch_size": 2.5}, 422, "batch_size"),
    ({"seed": -1}, 422, "seed"),
    ({"seed": 2**63}, 422, "seed"),
    ({"seed": True}, 422, "seed"),
    ({"digits": 10}, 422, "digits is 10, not a digit 0..9"),
    ({"digits": -1}, 422, "not a digit"),
    ({"digits": []}, 422, "digits lists 0 digits: give 1..1024"),
    ({"digits": [1] * 1025}, 422, "digits lists 1025 digits"),
    ({"digits": [1, 2, 3], "batch_size": 3, "x": 1}, 422, "x: Extra inputs are not permitted"),
    ({"batch_size": 3, "digits": [0, "1", 2]}, 422, "digits[1]"),
    ({"format": "gif"}, 422, "format"),
    ({"digits": None, "format": None}, 422, "format"),
    ([1, 2], 422, "must be a JSON object"),
    ("seed", 422, "must be a JSON object"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES)
def test_bad_generate_requests_get_a_clear_4xx(
    url: str, body: Any, status: int, message: str
) -> None:
    response = post(url, "/generate", body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_malformed_and_oversized_bodies_and_bad_queries(url: str) -> None:
    typed = {"Content-Type": "application/json"}
    not_json = httpx.post(f"{url}/generate", content=b"{seed: 7", headers=typed, timeout=30)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["detail"]
    binary = httpx.post(f"{url}/generate", content=bytes(range(256)), headers=typed, timeout=30)
    assert binary.status_code == 400
    huge = httpx.post(f"{url}/generate", content=b" " * (65 * 1024), timeout=30)
    assert huge.status_code == 413 and "above the limit" in huge.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    streamed = httpx.post(f"{url}/generate", content=chunks(), timeout=30)
    assert streamed.status_code == 413
    for query, message in [
        ("seed=abc", "not a whole number"),
        ("color=red", "unknown query parameter"),
        ("seed=1&seed=2", "given 2 times"),
        ("digits=1,x", "not a whole number"),
        ("batch_size=99999", "limit"),
    ]:
        response = httpx.get(f"{url}/generate?{query}")
        assert response.status_code == 422 and message in response.json()["detail"], query
    assert httpx.get(f"{url}/?seed=abc").status_code == 422
    assert httpx.put(f"{url}/generate").status_code == 405
    for body, message in [
        ({}, "counts: Field required"),
        ({"counts": [1, 2]}, "must list 10 numbers"),
        ({"counts": {"ten": 1}}, "not a digit"),
        ({"counts": [0] * 10, "target": 7000}, "balancing needs 70000 images"),
        ({"counts": [0] * 10, "target": -1}, "not a count"),
    ]:
        response = post(url, "/balance", body)
        assert response.status_code == 422 and message in response.json()["detail"], body
    metrics = httpx.get(f"{url}/metrics").text
    assert 'status="500"' not in metrics


# -- dynamic batching ------------------------------------------------------------------------------


def concurrently(count: int, work: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # collected and asserted on by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize("cap", [64, 3])  # 3: requests are sliced across several batches
def test_concurrent_requests_are_batched_and_get_their_own_bytes(
    registry: ModelRegistry, tmp_path: Path, reference: Reference, cap: int
) -> None:
    app = create_app(
        settings(batch_wait_ms=200, batch_max_images=cap, workers=2, threads=1),
        registry,
        cache_dir=tmp_path / "c",
    )
    with serving(app) as base, httpx.Client(base_url=base, timeout=60) as client:

        def work(i: int) -> np.ndarray:
            body = {"seed": 1000 + i, "batch_size": 1 + i % 5, "digits": i % 10, "format": "npy"}
            return npy(client.post("/generate", json=body))

        results = concurrently(16, work)
        metrics = client.get("/metrics").text
    for i, images in enumerate(results):
        assert isinstance(images, np.ndarray), images
        np.testing.assert_array_equal(images, reference("v1", 1000 + i, 1 + i % 5, i % 10))
    calls = _metric(metrics, "dcgan_inference_batch_images_count")
    total = _metric(metrics, "dcgan_inference_batch_images_sum")
    assert total == sum(1 + i % 5 for i in range(16)), total
    assert calls <= 8 if cap == 64 else calls >= total / cap, calls


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


# -- model lifecycle -------------------------------------------------------------------------------


def test_admin_reload_needs_the_token_and_swaps_to_the_promoted_version(
    registry: ModelRegistry, url: str, reference: Reference
) -> None:
    assert httpx.post(f"{url}/admin/reload").status_code == 401
    wrong = httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    unchanged = httpx.post(f"{url}/admin/reload", headers=auth)
    v1 = {"version": "v1", "changed": False}
    assert unchanged.json() == {**v1, "models": {MODEL: v1}}
    registry.promote("v2")
    swapped = httpx.post(f"{url}/admin/reload", headers=auth, timeout=60)
    v2 = {"version": "v2", "changed": True}
    assert swapped.json() == {**v2, "models": {MODEL: v2}}
    response = post(url, "/generate", {"seed": 7, "batch_size": 8, "format": "npy"})
    assert response.headers["x-model-version"] == "v2"
    np.testing.assert_array_equal(npy(response), reference("v2", 7, 8))
    assert not np.array_equal(reference("v1", 7, 8), reference("v2", 7, 8))


def test_admin_endpoints_are_disabled_without_a_token(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    app = create_app(settings(admin_token=None), registry, cache_dir=tmp_path / "c")
    with serving(app) as base:
        response = httpx.post(f"{base}/admin/reload", headers={"Authorization": "Bearer x"})
    assert response.status_code == 403 and "DCGAN_SERVE_ADMIN_TOKEN" in response.json()["detail"]


def test_hot_swap_under_load_fails_no_request(
    registry: ModelRegistry, tmp_path: Path, reference: Reference
) -> None:
    app = create_app(settings(poll_interval_s=0.05), registry, cache_dir=tmp_path / "c")
    stop = threading.Event()
    seen: list[tuple[str, int, np.ndarray]] = []
    failures: list[str] = []

    def hammer(base: str, worker: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            i = 0
            while not stop.is_set():
                seed = worker * 10_000 + i
                response = client.post(
                    "/generate", json={"seed": seed, "batch_size": 4, "format": "npy"}
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                else:
                    seen.append((response.headers["x-model-version"], seed, npy(response)))
                i += 1

    with serving(app) as base:
        threads = [threading.Thread(target=hammer, args=(base, w)) for w in range(6)]
        for thread in threads:
            thread.start()
        try:
            _wait_for(lambda: len(seen) >= 30)
            registry.promote("v2")  # the poller notices within 50 ms
            _wait_for(lambda: sum(v == "v2" for v, _, _ in seen) >= 30)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    assert not failures, failures[:3]
    versions = [v for v, _, _ in seen]
    assert versions.count("v1") >= 30 and versions.count("v2") >= 30
    for version, seed, images in seen[::7]:  # every answer is its own version's output
        np.testing.assert_array_equal(images, reference(version, seed, 4))


def _wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_corrupt_version_is_refused_and_the_old_one_keeps_serving(
    registry: ModelRegistry, registry_dir: Path, url: str
) -> None:
    onnx = registry_dir / MODEL / "versions" / "v2" / "generator.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    registry.promote("v2")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    refused = httpx.post(f"{url}/admin/reload", headers=auth, timeout=60)
    assert refused.status_code == 409
    assert (
        "generator.onnx" in refused.json()["detail"]
        and "still serving v1" in refused.json()["detail"]
    )
    response = post(url, "/generate", {"seed": 1, "batch_size": 2, "format": "npy"})
    assert response.status_code == 200 and response.headers["x-model-version"] == "v1"
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["ready"] and ready["version"] == "v1" and "sha256" in ready["last_error"].lower()
    failed = 'dcgan_model_reloads_total{model="cdcgan-mnist",outcome="failed"}'
    assert failed in httpx.get(f"{url}/metrics").text


def test_a_version_that_does_not_load_is_refused(
    registry: ModelRegistry, url: str, tmp_path: Path
) -> None:
    good = registry.pull("v1", tmp_path / "pulled")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "generator.onnx").write_bytes(b"not an onnx model")
    registry.publish(
        {"generator.onnx": broken / "generator.onnx"},
        version="v3",
        signature=json.loads((good / "manifest.json").read_text())["signature"],
    )
    registry.promote("v3")
    refused = httpx.post(
        f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )
    assert (
        refused.status_code == 409 and "does not load in ONNX Runtime" in refused.json()["detail"]
    )
    assert post(url, "/generate", {"batch_size": 1}).headers["x-model-version"] == "v1"


def test_warm_up_refuses_output_outside_the_contract() -> None:
    class NaNGenerator:
        signature = GeneratorSignature(latent_dim=4, conditional=True)

        def run(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
            return np.full((len(z), 1, 28, 28), np.nan, dtype=np.float32)

    with pytest.raises(ModelLoadError, match="not finite"):
        warm_up(NaNGenerator(), (1, 8))


def test_not_ready_until_a_production_model_exists(
    registry: ModelRegistry, registry_dir: Path, tmp_path: Path
) -> None:
    (registry_dir / MODEL / "aliases" / "production.json").unlink()
    app = create_app(settings(poll_interval_s=0.1), registry, cache_dir=tmp_path / "c")
    with serving(app, ready=False) as base:
        waiting = httpx.get(f"{base}/readyz")
        assert waiting.status_code == 503 and "production" in waiting.json()["last_error"]
        early = post(base, "/generate", {"batch_size": 1})
        assert early.status_code == 503 and early.headers["retry-after"] == "1"
        assert "no model loaded yet" in early.json()["detail"]
        assert "production.json" not in early.json()["detail"]  # the why stays internal
        assert httpx.get(f"{base}/healthz").status_code == 200
        registry.promote("v2")
        wait_ready(base, version="v2")
        assert post(base, "/generate", {"batch_size": 1}).status_code == 200
