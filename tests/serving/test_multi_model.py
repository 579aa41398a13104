"""Several models from one server (DCGAN_SERVE_MODELS): MNIST and Fashion-MNIST generators trained
on the real datasets, each following its own alias, loaded, reported and failing on its own, and
every route (/generate, /balance, KServe V2, the client, `dcgan balance`) answering with the model
asked for, to the byte of that model's ONNX generator run in-process."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.contract import GeneratorSignature, labels_for_request
from models.registry import LocalStore, ModelRegistry
from pipeline.data.loading import load_dataset
from pipeline.publish import publish_run
from pipeline.train import train
from pipeline.train_config import TrainConfig
from serving.api.app import create_app
from serving.api.settings import ServedModel, parse_models
from serving.core.generation import Plan, run_plan
from serving.core.onnx_backend import OnnxBackend
from serving.tools.client import DigitsClient
from serving.tools.dataset_balance import RegistrySource, ServiceSource, balance_dataset
from tests.serving.conftest import MODEL, TOKEN, settings
from tests.serving.live import serving

FASHION = "cdcgan-fashion-mnist"
BOTH = f"{MODEL},{FASHION}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def two_models(published_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published MNIST registry plus a Fashion-MNIST generator, version f1, in production."""
    root = tmp_path_factory.mktemp("two-models")
    shutil.copytree(published_registry, root / "registry")
    cfg = TrainConfig(
        dataset="fashion-mnist", limit=512, epochs=1, batch_size=64, g_width=8, d_width=8, seed=4
    )
    train(cfg, load_dataset("fashion-mnist"), root / "run", progress=False)
    fashion = ModelRegistry(LocalStore(root / "registry"), FASHION)
    publish_run(root / "run", fashion, version="f1")
    fashion.promote("f1")
    return root / "registry"


@pytest.fixture
def registry_dir(two_models: Path, tmp_path: Path) -> Path:
    """This test's own copy of the two-model registry (overrides the conftest's)."""
    dest = tmp_path / "registry"
    shutil.copytree(two_models, dest)
    return dest


def expected(registry_dir: Path, model: str, version: str, seed: int, n: int, digits: Any) -> Any:
    """The version's ONNX generator run in-process: the bytes any route must answer."""
    registry = ModelRegistry(LocalStore(registry_dir), model)
    sig = GeneratorSignature.from_dict(registry.show(version).signature)
    path = registry.pull(version, registry_dir.parent / "reference") / "generator.onnx"
    backend = OnnxBackend(path, sig, device="cpu")
    return run_plan(backend, Plan(seed, labels_for_request(n, digits)), 1024)


def npy(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def metric(text: str, name: str, **labels: str) -> float:
    """One series' value from the Prometheus text (labels in any order)."""
    for found, value in re.findall(rf"^{re.escape(name)}{{(.*)}} (\S+)$", text, re.M):
        if dict(re.findall(r'(\w+)="([^"]*)"', found)) == labels:
            return float(value)
    raise AssertionError(f"no {name}{labels} in the metrics")


def test_each_route_answers_with_the_model_asked_for(registry_dir: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(LocalStore(registry_dir), MODEL)
    app = create_app(settings(models=BOTH), registry, cache_dir=tmp_path / "cache")
    mnist = expected(registry_dir, MODEL, "v1", 7, 20, 3)
    fashion = expected(registry_dir, FASHION, "f1", 7, 20, 3)
    assert not np.array_equal(mnist, fashion)  # two different generators
    with serving(app) as url:
        served = httpx.get(f"{url}/models").json()
        assert served["default"] == MODEL
        assert [(m["model"], m["version"], m["ready"]) for m in served["models"]] == [
            (MODEL, "v1", True),
            (FASHION, "f1", True),
        ]
        assert httpx.get(f"{url}/models/{FASHION}").json() == served["models"][1]
        unknown = httpx.get(f"{url}/models/nope")
        assert unknown.status_code == 404 and FASHION in unknown.json()["detail"]

        body = {"seed": 7, "batch_size": 20, "digits": 3, "format": "npy"}
        np.testing.assert_array_equal(npy(httpx.post(f"{url}/generate", json=body)), mnist)
        asked = httpx.post(f"{url}/generate", json={**body, "model": FASHION})
        np.testing.assert_array_equal(npy(asked), fashion)
        assert asked.headers["x-model-name"] == FASHION and asked.headers["x-model-version"] == "f1"
        query = f"{url}/generate?seed=7&batch_size=20&digits=3&format=npy&model={FASHION}"
        np.testing.assert_array_equal(npy(httpx.get(query)), fashion)
        wrong = httpx.post(f"{url}/generate", json={**body, "model": "cdcgan-nope"})
        assert wrong.status_code == 404
        assert wrong.json()["detail"] == (
            f"unknown model 'cdcgan-nope': this server serves '{MODEL}', '{FASHION}'"
        )

        balanced = httpx.post(
            f"{url}/balance",
            json={"counts": {"3": 0}, "target": {"3": 20}, "seed": 7, "model": FASHION},
        )
        assert balanced.status_code == 200 and balanced.headers["x-model-name"] == FASHION
        with np.load(io.BytesIO(balanced.content)) as npz:
            np.testing.assert_array_equal(npz["images"], fashion)

        inputs = [
            {"name": "seed", "datatype": "INT64", "shape": [1], "data": [7]},
            {"name": "labels", "datatype": "INT64", "shape": [20], "data": [3] * 20},
        ]
        v2 = httpx.post(f"{url}/v2/models/{FASHION}/infer", json={"inputs": inputs}).json()
        assert v2["model_name"] == FASHION and v2["model_version"] == "f1"
        pixels = np.asarray(v2["outputs"][0]["data"], dtype=np.uint8).reshape(fashion.shape)
        np.testing.assert_array_equal(pixels, fashion)
        assert httpx.get(f"{url}/v2/models/{FASHION}/versions/f1/ready").status_code == 200
        assert httpx.get(f"{url}/v2/models/nope").json()["error"].startswith("unknown model")
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200

        with DigitsClient(url) as client:
            assert [m["model"] for m in client.models()] == [MODEL, FASHION]
            assert client.model(FASHION)["version"] == "f1" and client.model()["version"] == "v1"
            got = client.generate(20, digits=3, seed=7, model=FASHION)
            np.testing.assert_array_equal(got.images, fashion)
            assert got.model == FASHION

        ready = httpx.get(f"{url}/readyz").json()
        assert ready["version"] == "v1" and set(ready["models"]) == {MODEL, FASHION}
        assert ready["models"][FASHION]["ready"] and ready["models"][FASHION]["version"] == "f1"

        page = httpx.get(f"{url}/").text
        sources = re.findall(r'src="([^"]+)"', page)
        assert len(sources) == 20 and sum(f"model={FASHION}" in s for s in sources) == 10
        image = httpx.get(url + sources[-1].replace("&amp;", "&"))
        assert image.status_code == 200 and image.headers["x-model-name"] == FASHION

        text = httpx.get(f"{url}/metrics").text
        for model, version in ((MODEL, "v1"), (FASHION, "f1")):
            assert metric(text, "dcgan_model_info", model=model, version=version) == 1
            assert metric(text, "dcgan_model_served_from_cache", model=model) == 0
        assert metric(text, "dcgan_images_generated_total", route="/generate", model=FASHION) > 40
        assert metric(text, "dcgan_images_generated_total", route="/balance", model=FASHION) == 20
        assert metric(text, "dcgan_images_generated_total", route="/v2/infer", model=FASHION) == 20
        # The V2 routes are counted under their templates, not "other" or the raw path.
        route = "/v2/models/{name}/infer"
        assert metric(text, "dcgan_requests_total", route=route, status="200") == 1


def test_each_model_follows_its_own_alias_and_fails_on_its_own(
    registry_dir: Path, tmp_path: Path
) -> None:
    """Fashion follows `staging`, which is not set yet: MNIST serves and the server is ready;
    Fashion answers 503 until its alias names a version, then a reload of it alone loads it."""
    mnist = ModelRegistry(LocalStore(registry_dir), MODEL)
    fashion = ModelRegistry(LocalStore(registry_dir), FASHION)
    app = create_app(
        settings(models=f"{MODEL}, {FASHION}@staging"), mnist, cache_dir=tmp_path / "cache"
    )
    with serving(app) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200  # the default model is loaded
        state = ready.json()["models"][FASHION]
        assert not state["ready"] and state["error_kind"] == "not_published", state
        waiting = httpx.post(f"{url}/generate", json={"model": FASHION})
        assert waiting.status_code == 503 and waiting.headers["retry-after"] == "1"
        assert f"no model loaded yet for {FASHION!r}" in waiting.json()["detail"]
        assert httpx.post(f"{url}/generate", json={"model": MODEL}).status_code == 200
        # the server is ready by /readyz's rule (the default model); the model itself is not
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        assert httpx.get(f"{url}/v2/models/{FASHION}/ready").status_code == 503
        # Both answers, with a model not loaded, are what the OpenAPI document says (3.1: JSON
        # Schema 2020-12), as the fuzz test holds a server with every model loaded to it.
        spec = httpx.get(f"{url}/openapi.json").json()["paths"]
        for path, answer in (("/models", httpx.get(f"{url}/models")), ("/readyz", ready)):
            schema = spec[path]["get"]["responses"]["200"]["content"]["application/json"]
            jsonschema.Draft202012Validator(schema["schema"]).validate(answer.json())
        listed = httpx.get(f"{url}/models").json()["models"][1]
        assert listed == {
            "model": FASHION,
            "alias": "staging",
            "ready": False,
            "version": None,
            "signature": None,
            "metrics": None,
        }

        failed = httpx.post(f"{url}/admin/reload", headers=AUTH)  # every model: fashion fails
        assert failed.status_code == 409, failed.text
        assert failed.json()["detail"].startswith(f"{FASHION}: not published")
        assert failed.json()["models"] == {MODEL: {"version": "v1", "changed": False}}
        fashion.set_alias("staging", "f1")
        mnist.promote("v2")
        one = httpx.post(f"{url}/admin/reload", params={"model": FASHION}, headers=AUTH)
        assert one.json() == {
            "version": "f1",
            "changed": True,
            "models": {FASHION: {"version": "f1", "changed": True}},
        }
        assert httpx.get(f"{url}/models").json()["models"][0]["version"] == "v1"  # not reloaded
        every = httpx.post(f"{url}/admin/reload", headers=AUTH).json()
        assert every["models"] == {
            MODEL: {"version": "v2", "changed": True},
            FASHION: {"version": "f1", "changed": False},
        }
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        details = httpx.get(f"{url}/admin/model", params={"model": FASHION}, headers=AUTH).json()
        assert details["alias"] == "staging" and details["manifest"]["model_name"] == FASHION
        assert httpx.get(f"{url}/admin/model?model=x", headers=AUTH).status_code == 404

        text = httpx.get(f"{url}/metrics").text
        assert metric(text, "dcgan_model_reloads_total", model=FASHION, outcome="swapped") == 1
        assert metric(text, "dcgan_model_reloads_total", model=MODEL, outcome="swapped") == 2
        assert (
            metric(text, "dcgan_model_load_failures_total", model=FASHION, kind="not_published")
            >= 1
        )
        assert metric(text, "dcgan_model_info", model=MODEL, version="v2") == 1


def test_balance_command_and_registry_source_take_the_model(
    registry_dir: Path, tmp_path: Path
) -> None:
    """`dcgan balance --url --model` and the registry source, with no server, give the same
    Fashion-MNIST images for the same seed."""
    flags = ["--model", FASHION, "--seed", "5", "--out", str(tmp_path / "served")]
    images = np.zeros((12, 28, 28), np.uint8)
    labels = np.asarray([0] * 6 + [1] * 2 + [2] * 4, np.int64)
    np.savez(tmp_path / "skewed.npz", images=images, labels=labels)
    registry = ModelRegistry(LocalStore(registry_dir), MODEL)
    app = create_app(settings(models=BOTH), registry, cache_dir=tmp_path / "cache")
    with serving(app) as url:
        dcgan = Path(sys.executable).with_name("dcgan")
        done = subprocess.run(
            [str(dcgan), "balance", str(tmp_path / "skewed.npz"), "--url", url, *flags],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert f"from {FASHION} f1 (seed 5)" in done.stdout
        via_service = balance_dataset(
            tmp_path / "skewed.npz", tmp_path / "s2", ServiceSource(url, FASHION), seed=5
        )
    from models.registry.settings import RegistrySettings

    local = RegistrySettings(uri=str(registry_dir), _env_file=None)  # type: ignore[call-arg]
    with RegistrySource("production", local, model=FASHION) as source:
        direct = balance_dataset(tmp_path / "skewed.npz", tmp_path / "direct", source, seed=5)
    assert via_service.provenance and direct.provenance
    assert direct.provenance.model == via_service.provenance.model == FASHION
    # Each output is a folder: the balanced .npz beside its dataset card.
    with np.load(tmp_path / "served/skewed.npz") as a, np.load(tmp_path / "direct/skewed.npz") as b:
        np.testing.assert_array_equal(a["images"], b["images"])
        assert np.bincount(a["labels"]).tolist() == [6] * 10  # every class up to the largest


NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True).filter(
    lambda s: ".." not in s
)


@given(st.lists(st.tuples(NAME, st.sampled_from(["", "@staging", "@production"])), max_size=4))
def test_models_setting_lists_each_model_with_its_alias(entries: list[tuple[str, str]]) -> None:
    text = ",".join(name + alias for name, alias in entries)
    names = [name for name, _ in entries]
    if len(set(names)) < len(names):
        with pytest.raises(ValueError, match="named twice"):
            parse_models(text, "production")
        return
    expected = [ServedModel(n, a.removeprefix("@") or "production") for n, a in entries]
    assert list(parse_models(text, "production")) == expected


@given(st.text(max_size=40))
def test_any_models_setting_parses_or_is_one_value_error(text: str) -> None:
    try:
        served = parse_models(text, "production")
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert len({m.name for m in served}) == len(served)


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (f"{MODEL},{MODEL}", "named twice"),
        ("a/b", "invalid model name"),
        (f"{MODEL}@Prod", "invalid alias"),
    ],
)
def test_a_bad_models_setting_stops_the_server_in_one_line(
    models: str, message: str, tmp_path: Path
) -> None:
    dcgan = Path(sys.executable).with_name("dcgan")
    env = {"PATH": "/usr/bin:/bin", "DCGAN_SERVE_MODELS": models, "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(dcgan), "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
