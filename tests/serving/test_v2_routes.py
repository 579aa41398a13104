"""The KServe V2 routes in-process: the real app over ASGI (starlette's TestClient), a real
registry and model. Each 500 that issue 29 found is a 4xx with the protocol's ``{"error": ...}``
now; no generated request gets a 5xx; every infer request the OpenAPI document describes is
answered, as JSON and the binary way alike; readiness is /readyz's rule.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from models.registry import LocalStore, ModelRegistry
from serving.api.app import create_app
from serving.api.kserve import HEADER_LENGTH
from tests.serving.conftest import MODEL
from tests.serving.conftest import settings as serve_settings
from tests.serving.test_v2_decoder import headers, requests, values
from tests.serving.test_v2_document import as_binary

LIMITS = {"max_batch_size": 64, "max_balance_images": 640, "max_queue_images": 1024}
INFER = f"/v2/models/{MODEL}/infer"
SEED = {"name": "seed", "datatype": "INT64", "shape": [1], "data": [7]}
COUNT = {"name": "count", "datatype": "INT64", "shape": [1], "data": [2]}
Z = {"name": "z", "datatype": "FP32", "shape": [1, 100], "data": []}
Headers = list[tuple[bytes, bytes]]


def _app(registry: Path, cache: Path, **overrides: Any) -> FastAPI:
    served = serve_settings(**LIMITS, workers=1, threads=1, **overrides)
    return create_app(served, ModelRegistry(LocalStore(registry), MODEL), cache_dir=cache)


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)  # a server error is its 500


def _wait_loaded(client: TestClient, path: str = f"/v2/models/{MODEL}/ready") -> None:
    deadline = time.monotonic() + 60
    while client.get(path).status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").text
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(
    published_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("v2-routes")
    shutil.copytree(published_registry, root / "registry")
    with _client(_app(root / "registry", root / "cache")) as running:
        _wait_loaded(running)
        yield running


def _send(client: TestClient, method: str, path: str, body: bytes, headers: Headers) -> Any:
    """A request with its header bytes as given (TestClient re-encodes them as UTF-8, so a
    latin-1 '²' would not arrive as one), in the app's own event loop."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://v2") as raw:
            return await raw.request(method, path, content=body, headers=headers)

    assert client.portal is not None, "use the client in a with block (its lifespan runs)"
    return client.portal.call(send)


def _refused(response: Any) -> str:
    """The protocol's error answer: a 4xx with {"error": message}."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    message = response.json()["error"]
    assert isinstance(message, str) and message and len(message) < 400
    return message


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        # a shape whose element count wraps to zero in int64, and ones that overflow it
        ({"inputs": [{**Z, "shape": [2**32, 2**32]}]}, None, "is [N, 100]"),
        ({"inputs": [{**Z, "shape": [0, 2**70]}]}, None, "is [N, 100]"),
        ({"inputs": [{**Z, "shape": [2**62, 100]}]}, None, "rows"),
        ({"inputs": [{**SEED, "shape": [2**64]}]}, None, "is [1]"),
        ({"inputs": [{**SEED, "name": "labels", "shape": [2**70], "data": []}]}, None, "rows"),
        # parameters of the wrong type, at each level
        ({"inputs": [SEED, COUNT], "outputs": [{"name": "images", "parameters": [1]}]}, None, ""),
        ({"inputs": [SEED, COUNT], "outputs": [{"name": "images", "parameters": "x"}]}, None, ""),
        ({"inputs": [{**SEED, "parameters": []}, COUNT]}, None, "parameters"),
        ({"inputs": [SEED, COUNT], "parameters": 0}, None, "parameters"),
        ({"inputs": [SEED, COUNT], "parameters": {"binary_data_output": "yes"}}, None, "true or"),
        # a header length that str.isdigit takes and int() does not, and others not ASCII digits
        ({"inputs": [SEED, COUNT]}, "²".encode("latin-1"), "ASCII digits"),
        ({"inputs": [SEED, COUNT]}, "¹".encode("latin-1"), "ASCII digits"),
        ({"inputs": [SEED, COUNT]}, "٣".encode(), "ASCII digits"),
        ({"inputs": [SEED, COUNT]}, b" 12", "ASCII digits"),
        ({"inputs": [SEED, COUNT]}, b"1" * 30, "ASCII digits"),
        # deep nesting and the other strict JSON rules of /generate and /balance
        ("[" * 5000 + "]" * 5000, None, "nests deeper"),
        ('{"inputs": ' + "[" * 100 + "]" * 100 + "}", None, "nests deeper"),
        ('{"inputs": [], "inputs": []}', None, "repeats the key 'inputs'"),
        ('{"inputs": [{"name": "seed", "name": "seed"}]}', None, "repeats the key 'name'"),
        ('{"inputs": [{"name": "seed", "shape": [1], "data": [NaN]}]}', None, "not valid JSON"),
        ('{"inputs": [], "id": 1e400}', None, "not valid JSON"),
    ],
)
def test_each_malformed_request_found_is_a_4xx_with_an_error_body(
    client: TestClient, body: Any, header: bytes | None, message: str
) -> None:
    content = (body if isinstance(body, str) else json.dumps(body)).encode()
    extra = [] if header is None else [(HEADER_LENGTH.encode(), header)]
    assert message in _refused(_send(client, "POST", INFER, content, extra))
    assert client.get("/v2/health/live").status_code == 200


def test_a_repeated_header_length_is_refused(client: TestClient) -> None:
    body = json.dumps({"inputs": [SEED, COUNT]}).encode()
    twice = [(HEADER_LENGTH, str(len(body))), (HEADER_LENGTH, str(len(body)))]
    assert "given 2 times" in _refused(client.post(INFER, content=body, headers=twice))
    assert client.post(INFER, content=body, headers=twice[:1]).status_code == 200


def test_a_wrong_method_names_the_allowed_one_on_templated_paths(client: TestClient) -> None:
    """405's Allow header on /v2/models/{name}/...: it was empty for every templated path."""
    methods = {INFER: "POST", f"/v2/models/{MODEL}": "GET", "/generate": "GET, POST"}
    for path, allowed in methods.items():
        answer = client.delete(path)
        assert answer.status_code == 405 and answer.headers["allow"] == allowed, path


paths = st.sampled_from(
    [
        INFER,
        INFER,
        INFER,
        f"/v2/models/{MODEL}/versions/v1/infer",
        f"/v2/models/{MODEL}/versions/v9/infer",
        "/v2/models/other/infer",
        f"/v2/models/{MODEL}",
        "/v2/health/ready",
    ]
)
bodies = st.one_of(
    requests.map(lambda request: json.dumps(request).encode()),
    values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
    st.one_of(st.sampled_from([9, 999, 1000, 5000, 20_000]), st.integers(1, 20_000)).map(
        lambda depth: b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    ),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
    path=paths,
    body=bodies,
    header=st.one_of(
        st.none(), st.none(), headers.map(lambda text: None if text is None else text.encode())
    ),
    tail=st.binary(max_size=64),
)
def test_no_v2_request_is_a_server_error(
    client: TestClient, method: str, path: str, body: bytes, header: bytes | None, tail: bytes
) -> None:
    sent = [] if header is None else [(HEADER_LENGTH.encode(), header)]
    answer = _send(client, method, path, body + tail if header else body, sent)
    if answer.status_code >= 400:
        _refused(answer)


def _document_cases(client: TestClient) -> st.SearchStrategy[Any]:
    document = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    return document[INFER.replace(MODEL, "{name}")]["POST"].as_strategy()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_documented_infer_request_is_answered_as_json_and_as_binary(
    client: TestClient, data: st.DataObject
) -> None:
    """The document is exact in this direction: a body it calls valid is a 200, and the binary
    data extension gives the very same images."""
    case = data.draw(_document_cases(client))
    by_json = client.post(INFER, json=case.body)
    assert by_json.status_code == 200, (case.body, by_json.text)
    raw, length = as_binary(case.body)
    by_binary = client.post(INFER, content=raw, headers={HEADER_LENGTH: length})
    assert by_binary.status_code == 200, (case.body, by_binary.text)
    assert _images(by_json).tobytes() == _images(by_binary).tobytes()


def _images(answer: Any) -> np.ndarray:
    """The images of a V2 answer, JSON or binary."""
    length = answer.headers.get(HEADER_LENGTH)
    if length is None:
        output = answer.json()["outputs"][0]
        return np.array(output["data"], dtype=np.uint8).reshape(output["shape"])
    header = json.loads(answer.content[: int(length)])
    shape = header["outputs"][0]["shape"]
    return np.frombuffer(answer.content[int(length) :], dtype=np.uint8).reshape(shape)


def test_server_readiness_is_the_rule_of_readyz(published_registry: Path, tmp_path: Path) -> None:
    """A second model not published (Fashion-MNIST in the default compose stack) kept
    /v2/health/ready at 503 forever while /readyz was 200: both follow the default model now."""
    shutil.copytree(published_registry, tmp_path / "registry")
    served = f"{MODEL}, unpublished"
    app = _app(tmp_path / "registry", tmp_path / "cache", models=served)
    with _client(app) as client:
        _wait_loaded(client)
        assert client.get("/readyz").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get(f"/v2/models/{MODEL}/ready").status_code == 200
        unready = client.get("/v2/models/unpublished/ready")
        assert unready.status_code == 503 and "no model loaded yet" in unready.json()["error"]
        app.state.service.draining = True  # SIGTERM (serving/api/server.py): both turn 503
        assert client.get("/readyz").status_code == 503
        assert client.get("/v2/health/ready").status_code == 503
