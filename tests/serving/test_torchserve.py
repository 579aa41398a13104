"""The TorchServe backend, started for real: archive from the registry, Java frontend, workers.

One TorchServe per module (startup is seconds); every request goes over HTTP like a client's.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from models.contract import CLASSIFIER_NAME, DEFAULT_MAX_CANDIDATES, GeneratorSignature
from models.registry import LocalStore, ModelRegistry
from serving.core.digits import Answer, ChunkedRunner, DigitService, run_now
from serving.core.encoding import grid_png
from serving.core.errors import RequestError
from serving.core.generation import plan_generate, run_plan
from serving.core.onnx_backend import OnnxBackend, OnnxClassifier
from serving.core.schemas import GenerateRequest, Limits
from serving.http_status import http_status
from serving.torchserve.archive import build_archive
from serving.torchserve.handler import HandlerConfigError, Loaded, _limits, parse_request
from tests.serving.conftest import FILTERED, MODEL
from tests.support.torchserve import TorchServeProcess, running_torchserve
from tests.test_cli import dcgan

pytest.importorskip("ts", reason="torchserve is not installed")
pytest.importorskip("model_archiver", reason="torch-model-archiver is not installed")

VERSION = "v1"
NPY_REQUEST = {"seed": 7, "batch_size": 64, "digits": 3, "format": "npy"}
JSON_PART = {"content-type": "application/json"}  # how TorchServe types a body parameter


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def npy(self) -> np.ndarray:
        array: np.ndarray = np.load(io.BytesIO(self.body), allow_pickle=False)
        return array


@dataclass(frozen=True)
class Served:
    server: TorchServeProcess
    version_dir: Path  # the pulled, verified files of v1 (for the ONNX Runtime reference)
    mar: Path


def post(url: str, body: bytes | None, content_type: str | None = "application/json") -> Reply:
    request = urllib.request.Request(url, data=body, method="POST")
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def generate(served: Served, request: dict[str, Any]) -> Reply:
    return post(served.server.predictions_url, json.dumps(request).encode())


@pytest.fixture(scope="module")
def served(published_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """v1 of the published registry, archived and served by one TorchServe for the module."""
    root = tmp_path_factory.mktemp("torchserve")
    registry = ModelRegistry(LocalStore(published_registry), MODEL)  # read only: pull, show
    mar = build_archive(registry, VERSION, root / "model_store", cache_dir=root / "cache")
    version_dir = registry.pull(VERSION, root / "cache")
    # The default limits (batch 1024, body 64 KiB), whatever the caller's environment says.
    env = {"DCGAN_SERVE_MAX_BATCH_SIZE": "", "DCGAN_SERVE_MAX_BODY_BYTES": ""}
    with running_torchserve(root / "model_store", mar.name, root / "ts", env=env) as server:
        yield Served(server, version_dir, mar)
    assert processes_mentioning(root / "ts") == [], "TorchServe left processes behind"


@pytest.fixture(scope="module")
def served_filtered(
    filtering_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """v3 (published with its evaluation classifier) archived and served: filtered answers."""
    root = tmp_path_factory.mktemp("torchserve-filtered")
    registry = ModelRegistry(LocalStore(filtering_registry), MODEL)
    mar = build_archive(registry, FILTERED, root / "model_store", cache_dir=root / "cache")
    version_dir = registry.pull(FILTERED, root / "cache", optional=[CLASSIFIER_NAME])
    env = {"DCGAN_SERVE_MAX_BATCH_SIZE": "", "DCGAN_SERVE_MAX_CANDIDATES": ""}
    with running_torchserve(root / "model_store", mar.name, root / "ts", env=env) as server:
        yield Served(server, version_dir, mar)


def processes_mentioning(path: Path) -> list[str]:
    """Live processes whose command line names ``path`` (java gets ``-f path/config...``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(path) in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def onnx_pixels(version_dir: Path, request: dict[str, Any]) -> np.ndarray:
    """The ONNX Runtime path for the same request: same plan, same pixel conversion."""
    manifest = json.loads((version_dir / "manifest.json").read_bytes())
    sig = GeneratorSignature.from_dict(manifest["signature"])
    backend = OnnxBackend(version_dir / "generator.onnx", sig, device="cpu")
    plan = plan_generate(GenerateRequest.model_validate(request, context={"limits": Limits()}), sig)
    return run_plan(backend, plan, chunk=256)


def test_archive_holds_the_verified_version(served: Served) -> None:
    assert served.mar.name == f"{MODEL}-{VERSION}.mar"
    assert [p.name for p in served.mar.parent.iterdir()] == [served.mar.name]  # no temp leftovers
    with zipfile.ZipFile(served.mar) as archive:
        names = set(archive.namelist())
        mar_manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        bundled = archive.read("manifest.json")
    assert {"handler.py", "generator.torchscript.pt", "manifest.json"} <= names
    assert mar_manifest["model"]["modelName"] == MODEL
    assert mar_manifest["model"]["modelVersion"] == VERSION
    assert bundled == (served.version_dir / "manifest.json").read_bytes()


def test_npy_answer_and_headers(served: Served) -> None:
    reply = generate(served, NPY_REQUEST)
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "application/x-npy"
    assert reply.headers["X-Model-Name"] == MODEL
    assert reply.headers["X-Model-Version"] == VERSION
    assert reply.headers["X-Seed"] == "7"
    assert reply.headers["X-Batch-Size"] == "64"
    pixels = reply.npy()
    assert pixels.dtype == np.uint8 and pixels.shape == (64, 28, 28)
    assert pixels.std() > 0  # real images, not a constant


def test_same_pixels_as_onnx_runtime(served: Served) -> None:
    """TorchScript (TorchServe) and ONNX Runtime: same plan, same pixel conversion.

    Measured on CPU with the tiny test generator: this request is byte-identical (0 of 50,176
    pixels differ). The two graphs differ by up to ~2e-8 before rounding, so a value at exactly
    half a grey level can round either way: over 10 seeds x 1024 images, 4 of 8,028,160 pixels
    (5e-7) differed, each by one grey level. Hence: at most 1 level, a tiny fraction.
    """
    served_pixels = generate(served, NPY_REQUEST).npy()
    reference = onnx_pixels(served.version_dir, NPY_REQUEST)
    diff = np.abs(served_pixels.astype(np.int16) - reference.astype(np.int16))
    fraction = float((diff > 0).mean())
    assert diff.max() <= 1, f"max grey-level difference {diff.max()}, {fraction:.2e} differ"
    assert fraction < 1e-3, f"{fraction:.2e} of the pixels differ by one grey level"


def onnx_answer(version_dir: Path, request: dict[str, Any]) -> Answer:
    """The ONNX Runtime service's answer to the same request, through the same digit service."""
    manifest = json.loads((version_dir / "manifest.json").read_bytes())
    sig = GeneratorSignature.from_dict(manifest["signature"])
    loaded = Loaded(
        manifest["model_name"],
        manifest["version"],
        OnnxBackend(version_dir / "generator.onnx", sig, device="cpu"),
        OnnxClassifier(version_dir / CLASSIFIER_NAME, sig.num_classes, device="cpu"),
    )
    plan = plan_generate(GenerateRequest.model_validate(request, context={"limits": Limits()}), sig)
    service = DigitService(ChunkedRunner(256), DEFAULT_MAX_CANDIDATES)
    return run_now(service.answer(loaded, plan, request["min_confidence"]))


def test_filtered_answers_as_the_onnx_service(served_filtered: Served) -> None:
    """The archive carries classifier.onnx; min_confidence works on TorchServe with the ONNX
    service's candidates (issue 31, item 1): same filter counts, same pixels within a level."""
    with zipfile.ZipFile(served_filtered.mar) as archive:
        assert CLASSIFIER_NAME in archive.namelist()
    request = {"seed": 4, "batch_size": 40, "digits": [3, 4, 7], "format": "npy"}
    for threshold in (0.5, 0.3, 0.2, 0.1):  # the strictest the tiny fixture model meets
        reply = generate(served_filtered, {**request, "min_confidence": threshold})
        if reply.status == 200:
            break
        assert reply.status == 422 and "no candidate" in reply.json()["detail"], reply.body
    assert reply.status == 200, reply.body[:300]
    reference = onnx_answer(served_filtered.version_dir, {**request, "min_confidence": threshold})
    assert reference.filtered is not None
    assert reply.headers["X-Filter-Candidates"] == str(reference.filtered.candidates)
    assert reference.filtered.candidates > 40  # the filter refused some first candidates
    diff = np.abs(reply.npy().astype(np.int16) - reference.pixels.astype(np.int16))
    assert diff.max() <= 1 and float((diff > 0).mean()) < 1e-3


def test_filter_limits_as_the_onnx_service(served: Served, served_filtered: Served) -> None:
    unevaluated = generate(served, {**NPY_REQUEST, "min_confidence": 0.5})  # v1: no classifier
    assert unevaluated.status == 409
    assert "published without its evaluation classifier" in unevaluated.json()["detail"]
    over = generate(served_filtered, {**NPY_REQUEST, "min_confidence": 0.5, "max_candidates": 17})
    assert over.status == 422 and "from 1 to 16" in over.json()["detail"]


def test_deterministic_and_prefix(served: Served) -> None:
    first = generate(served, NPY_REQUEST)
    second = generate(served, NPY_REQUEST)
    assert first.body == second.body
    small = generate(served, {**NPY_REQUEST, "batch_size": 10}).npy()
    np.testing.assert_array_equal(small, first.npy()[:10])


def test_json_and_png_formats(served: Served) -> None:
    request = {"seed": 11, "batch_size": 12, "format": "json"}
    pixels = generate(served, {**request, "format": "npy"}).npy()
    reply = generate(served, request)
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert {k: body[k] for k in ("model", "version", "seed", "batch_size")} == {
        "model": MODEL,
        "version": VERSION,
        "seed": 11,
        "batch_size": 12,
    }
    assert body["labels"] == [i % 10 for i in range(12)]
    images = [Image.open(io.BytesIO(base64.b64decode(image))) for image in body["images"]]
    np.testing.assert_array_equal(np.stack([np.asarray(image) for image in images]), pixels)

    grid = generate(served, {**request, "format": "png"})
    assert grid.status == 200 and grid.headers["content-type"] == "image/png"
    assert grid.headers["X-Seed"] == "11"
    assert grid.body == grid_png(pixels)  # the shared encoder: 10 a row, 2 rows


@pytest.mark.parametrize(
    "body,content_type,status,message",
    [
        (b'{"batch_size": 0}', "application/json", 422, "batch_size"),
        (b'{"batch_size": 5000}', "application/json", 422, "above this server's limit 1024"),
        (b'{"digits": 12}', "application/json", 422, "digits is 12"),
        (b'{"format": "gif"}', "application/json", 422, "format"),
        (b'{"seed": -1}', "application/json", 422, "seed"),
        (b'{"seed": true}', "application/json", 422, "seed"),
        (b'{"seed": "7"}', "application/json", 422, "seed"),
        (b'{"colour": "red"}', "application/json", 422, "colour"),
        (b'{"model": "cdcgan-fashion-mnist"}', "application/json", 404, "serves each model"),
        (b'{"digits": [], "batch_size": 3}', "application/json", 422, "digits lists 0 digits"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"{not json", "application/octet-stream", 415, "Content-Type: application/json"),
        (b'{"seed": 7}', "text/plain", 415, "Content-Type: application/json"),
        (b'{"batch_size": 1, "batch_size": 2}', "application/octet-stream", 415, "send JSON"),
        (b'{"batch_size": 1, "batch_size": 2}', "application/json", 422, "repeats the key"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "nests deeper"),
        (b'{"seed": NaN}', "application/json", 400, "not valid JSON"),
        (b"[1, 2, 3]", "application/json", 422, "JSON object"),
        (b'"seven"', "application/json", 422, "JSON object"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b'{"seed": 7}', "application/x-www-form-urlencoded", 415, "Content-Type: application"),
        (b"batch_size=0", "application/x-www-form-urlencoded", 422, "batch_size"),
        (b"x" * 70_000, "application/octet-stream", 413, "above the limit"),
    ],
)
def test_bad_requests_are_4xx_with_detail(
    served: Served, body: bytes, content_type: str, status: int, message: str
) -> None:
    reply = post(served.server.predictions_url, body, content_type)
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"] == "application/json"
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and message in detail


@pytest.mark.parametrize(
    "body,content_type",
    [
        (None, None),  # no body at all: the defaults
        (b"", "application/json"),
        (b"", "text/plain"),
        (b"{}", "application/json"),
    ],
)
def test_empty_body_means_defaults(served: Served, body: bytes | None, content_type: str) -> None:
    reply = post(served.server.predictions_url, body, content_type)
    assert reply.status == 200, reply.body[:300]
    answer = reply.json()
    assert answer["batch_size"] == 10 and answer["labels"] == list(range(10))
    assert answer["seed"] == int(reply.headers["X-Seed"])  # drawn by the server, and named


@pytest.mark.parametrize(
    "body,content_type",
    [
        (json.dumps(NPY_REQUEST).encode(), "application/json; charset=utf-8"),
        (b"seed=7&batch_size=64&digits=3&format=npy", "application/x-www-form-urlencoded"),
    ],
)
def test_body_encodings_mean_the_same(served: Served, body: bytes, content_type: str) -> None:
    reference = generate(served, NPY_REQUEST)
    reply = post(served.server.predictions_url, body, content_type)
    assert reply.status == 200, reply.body[:300]
    assert reply.body == reference.body


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain"])
def test_json_not_declared_json_is_415_as_on_the_onnx_service(
    served: Served, content_type: str
) -> None:
    """A text/plain POST is what any web page may send (a CORS simple request): refused."""
    reply = post(served.server.predictions_url, json.dumps(NPY_REQUEST).encode(), content_type)
    assert reply.status == 415 and "Content-Type: application/json" in reply.json()["detail"]


def test_versioned_url(served: Served) -> None:
    reply = post(f"{served.server.predictions_url}/{VERSION}", json.dumps(NPY_REQUEST).encode())
    assert reply.status == 200 and reply.headers["X-Model-Version"] == VERSION


def test_container_healthcheck_needs_a_ready_worker(served: Served) -> None:
    """The image's HEALTHCHECK: exit 0 with a READY worker of the model, 1 for a model it lacks."""
    env = {**os.environ, "DCGAN_TORCHSERVE_MANAGEMENT_URL": served.server.management_url}
    check = [sys.executable, "-m", "serving.torchserve.healthcheck"]
    ok = subprocess.run([*check, MODEL], env=env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert "1 READY worker" in ok.stdout
    missing = subprocess.run(
        [*check, "no-such-model"], env=env, capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 1
    assert "unhealthy: no-such-model" in missing.stderr


def test_archive_cli_missing_version_exits_2(registry_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {"DCGAN_REGISTRY_URI": str(registry_dir), "DCGAN_REGISTRY_CACHE_DIR": str(tmp_path)}
    result = dcgan("torchserve", "archive", "v9", "--model-store", str(store), env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "'v9'" in lines[0] and "Traceback" not in result.stderr
    assert not store.exists() or not any(store.iterdir())


def test_archive_cli_builds_production(registry_dir: Path, tmp_path: Path) -> None:
    env = {"DCGAN_REGISTRY_URI": str(registry_dir), "DCGAN_REGISTRY_CACHE_DIR": str(tmp_path)}
    result = dcgan("torchserve", "archive", "--model-store", str(tmp_path / "store"), env=env)
    assert result.returncode == 0, result.stderr
    mar = Path(result.stdout.strip().splitlines()[-1])
    assert mar == tmp_path / "store" / f"{MODEL}-{VERSION}.mar" and mar.is_file()
    assert os.stat(mar).st_mode & 0o777 == 0o644


def test_limits_from_env_over_model_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCGAN_SERVE_MAX_BATCH_SIZE", raising=False)
    assert _limits({}).max_batch_size == 1024
    assert _limits({"handler": {"max_batch_size": 100}}).max_batch_size == 100
    monkeypatch.setenv("DCGAN_SERVE_MAX_BATCH_SIZE", "50")
    assert _limits({"handler": {"max_batch_size": 100}}).max_batch_size == 50
    monkeypatch.setenv("DCGAN_SERVE_MAX_BATCH_SIZE", "abc")
    with pytest.raises(HandlerConfigError, match="DCGAN_SERVE_MAX_BATCH_SIZE is 'abc'"):
        _limits({})
    monkeypatch.setenv("DCGAN_SERVE_MAX_BATCH_SIZE", "")
    with pytest.raises(HandlerConfigError, match=r"handler\.max_batch_size is 0"):
        _limits({"handler": {"max_batch_size": 0}})


@pytest.mark.parametrize(
    "item,headers",
    [
        ({"body": {"seed": 7, "batch_size": 2}}, {"body": {"content-type": "application/json"}}),
        ({"body": bytearray(b'{"seed": 7, "batch_size": 2}')}, {"body": JSON_PART}),
        ({"data": b'{"seed": 7, "batch_size": 2}'}, {"data": JSON_PART}),
        ({"seed": b"7", "batch_size": b"2"}, {"Content-Type": "application/x-www-form-urlencoded"}),
    ],
)
def test_parse_request_whatever_torchserve_decoded(
    item: dict[str, Any], headers: dict[str, Any]
) -> None:
    assert parse_request(item, headers, Limits()) == GenerateRequest(seed=7, batch_size=2)


@pytest.mark.parametrize(
    "item,headers",
    [
        ({"body": '{"seed": 7}'}, {"body": {"content-type": "text/plain"}}),
        ({"body": bytearray(b'{"seed": 7}')}, {}),
    ],
)
def test_parse_request_refuses_a_body_not_declared_json(
    item: dict[str, Any], headers: dict[str, Any]
) -> None:
    with pytest.raises(RequestError) as refused:
        parse_request(item, headers, Limits())
    assert http_status(refused.value) == 415
