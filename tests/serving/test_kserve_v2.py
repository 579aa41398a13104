"""KServe V2 (Open Inference Protocol) against the real server process, with the stock client
(`tritonclient[http]` from PyPI): health, metadata, and digits equal, byte for byte, to
/generate's, in the JSON tensor form and with the binary data extension."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from models.contract import latent_for_seed
from models.registry import ModelRegistry
from serving.api.app import create_app
from serving.tools.client import DigitsClient
from tests.serving.conftest import MODEL, Reference, settings
from tests.serving.live import serving


@pytest.fixture
def url(registry: ModelRegistry, tmp_path: Path) -> Iterator[str]:
    with serving(create_app(settings(), registry, cache_dir=tmp_path / "cache")) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[triton.InferenceServerClient]:
    stock = triton.InferenceServerClient(url.removeprefix("http://"))
    yield stock
    stock.close()


def _inputs(binary: bool, **arrays: np.ndarray) -> list[triton.InferInput]:
    types = {np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32"}
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), types[array.dtype])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "v1")
    assert not client.is_model_ready(MODEL, "v2") and not client.is_model_ready("other")
    metadata = client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == ["v1"]
    assert {i["name"] for i in metadata["inputs"]} == {"seed", "count", "z", "labels"}
    assert metadata["outputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 28, 28]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_gives_the_bytes_of_generate(
    client: triton.InferenceServerClient, url: str, reference: Reference, binary: bool
) -> None:
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.int64)
    seed = np.array([42], dtype=np.int64)
    outputs = [triton.InferRequestedOutput("images", binary_data=binary)]
    answer = client.infer(
        MODEL, _inputs(binary, seed=seed, labels=labels), outputs=outputs, request_id="r1"
    )
    images = answer.as_numpy("images")
    assert images is not None and images.dtype == np.uint8 and images.shape == (8, 28, 28)
    with DigitsClient(url) as ours:
        served = ours.generate(8, digits=labels.tolist(), seed=42)
    np.testing.assert_array_equal(images, served.images)
    np.testing.assert_array_equal(images, reference("v1", 42, 8, labels.tolist()))
    response = answer.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        MODEL,
        "v1",
        "r1",
    )
    # The seed's own latents, sent as z, give the same images; count alone cycles the digits.
    z = latent_for_seed(42, 8, 100).astype(np.float32)
    by_z = client.infer(MODEL, _inputs(binary, z=z, labels=labels), model_version="v1")
    np.testing.assert_array_equal(by_z.as_numpy("images"), images)
    cycled = client.infer(MODEL, _inputs(binary, seed=seed, count=np.array([12], np.int64)))
    np.testing.assert_array_equal(cycled.as_numpy("images"), reference("v1", 42, 12))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"count": np.array([3], np.int64)}, "exactly one of the inputs 'seed' and 'z'"),
        (
            {"seed": np.array([1], np.int64), "z": np.zeros((1, 100), np.float32)},
            "exactly one of the inputs 'seed' and 'z'",
        ),
        ({"seed": np.array([1], np.int64)}, "give 'count' or 'labels'"),
        ({"z": np.zeros((2, 7), np.float32)}, "input 'z' is [N, 100]"),
        ({"seed": np.array([1], np.int64), "count": np.array([5000], np.int64)}, "5000"),
        ({"z": np.full((1, 100), np.nan, np.float32)}, "finite"),
        ({"seed": np.array([1], np.int64), "labels": np.array([10], np.int64)}, "digits"),
    ],
)
def test_bad_requests_are_400s_with_a_message(
    client: triton.InferenceServerClient, arrays: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(InferenceServerException, match=message.replace("[", r"\[")) as caught:
        client.infer(MODEL, _inputs(True, **arrays))
    assert caught.value.status() in ("400", "422")


def test_unknown_models_and_raw_bodies(url: str) -> None:
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    missing = httpx.get(f"{url}/v2/models/other")
    assert missing.status_code == 404 and "unknown model" in missing.json()["error"]
    for body, headers in [
        (b"{", {}),
        (b'{"inputs": 3}', {}),
        (b'{"inputs": []}xx', {"Inference-Header-Content-Length": "14"}),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "99"}),
    ]:
        answer = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=body, headers=headers)
        assert answer.status_code == 400 and answer.json()["error"], (body, answer.text)
