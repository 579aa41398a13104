"""What no client input may do to the service: each bug found from outside, over real HTTP.

Reported 2026-12-01 (issue 12): a /balance whose int64 deficits wrapped around killed the server;
an already balanced dataset, counts of 2^63 and deeply nested JSON answered 500; duplicate keys and
text/plain bodies were accepted; a batch-1 request waited behind all of a large /balance; work of
a client that had hung up was still computed. The fuzzer (test_fuzz.py) covers what no list does.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from models.registry import ModelRegistry
from serving.api.app import create_app
from tests.serving.conftest import settings
from tests.serving.live import serving

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def url(registry: ModelRegistry, tmp_path: Path) -> Iterator[str]:
    with serving(create_app(settings(), registry, cache_dir=tmp_path / "cache")) as base:
        yield base


def post(url: str, path: str, content: bytes, headers: dict[str, str] | None = None) -> Any:
    headers = JSON if headers is None else headers
    return httpx.post(f"{url}{path}", content=content, headers=headers, timeout=60)


def server_errors(url: str) -> list[str]:
    """5xx answers the server counted; /readyz's 503 before the model is loaded is its answer
    (the fixture polls it while a loaded machine is still loading), not an error."""
    return [
        line
        for line in httpx.get(f"{url}/metrics").text.splitlines()
        if line.startswith("dcgan_requests_total")
        and 'status="5' in line
        and 'route="/readyz",status="503"' not in line
    ]


# -- inputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        # int64 deficits that wrapped around to a small total, then killed the process
        b'{"counts": [0,0,0,0,0,0,0,0,0,0], "target": [9223372036854775807, '
        b"9223372036854775807, 2, 0, 0, 0, 0, 0, 0, 0]}",
        b'{"counts": [0,0,0,0,0,0,0,0,0,0], "target": 9223372036854775808}',
        b'{"counts": [9223372036854775808,0,0,0,0,0,0,0,0,0]}',
        b'{"counts": {"3": 1e400}}',
        b'{"counts": [0,0,0,0,0,0,0,0,0,0], "target": ' + b"9" * 5000 + b"}",
    ],
)
def test_huge_numbers_are_422_and_the_server_lives(url: str, body: bytes) -> None:
    response = post(url, "/balance", body)
    assert response.status_code in (400, 422), response.text
    assert "limit" in response.json()["detail"] or "not" in response.json()["detail"]
    assert len(response.json()["detail"]) < 300  # a 5,000-digit number is not echoed back
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert not server_errors(url)


@pytest.mark.parametrize(
    "body",
    [
        {"counts": [50] * 10},
        {"counts": [7] * 10, "target": 0},
        {"counts": {"3": 10}, "target": {"3": 5}},
    ],
)
def test_an_already_balanced_dataset_gets_200_and_no_images(url: str, body: Any) -> None:
    response = httpx.post(f"{url}/balance", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["x-batch-size"] == "0"
    with np.load(io.BytesIO(response.content)) as npz:
        assert npz["images"].shape == (0, 28, 28) and npz["images"].dtype == np.uint8
        assert npz["labels"].shape == (0,)


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, JSON, 400, "nests deeper than 8"),
        (b'{"seed": ' + b"[" * 50 + b"]" * 50 + b"}", JSON, 400, "nests deeper"),
        (b'{"batch_size": 1, "batch_size": 2}', JSON, 422, "repeats the key 'batch_size'"),
        (b'{"seed": NaN}', JSON, 400, "not valid JSON"),
        (b'{"seed": Infinity}', JSON, 400, "not valid JSON"),
        (b"   ", JSON, 400, "not valid JSON"),
        (b'{"batch_size": 1}', {"Content-Type": "text/plain"}, 415, "application/json"),
        (b'{"batch_size": 1}', {}, 415, "no Content-Type"),
        (b'{"batch_size": 1}', {"Content-Type": "application/x-www-form-urlencoded"}, 415, "JSON"),
    ],
)
def test_malformed_json_and_undeclared_bodies(
    url: str, content: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    for path in ("/generate", "/balance"):
        response = post(url, path, content, headers)
        assert response.status_code == status, (path, response.text)
        assert message in response.json()["detail"], response.text


def test_json_content_type_with_parameters_and_integral_numbers_are_accepted(url: str) -> None:
    typed = {"Content-Type": "application/json; charset=utf-8"}
    response = post(url, "/generate", b'{"batch_size": 3.0, "seed": 1e1, "format": "npy"}', typed)
    assert response.status_code == 200, response.text
    assert response.headers["x-batch-size"] == "3" and response.headers["x-seed"] == "10"
    assert post(url, "/generate", b'{"batch_size": 2.5}').status_code == 422


@pytest.mark.parametrize("value", [" 7", "7 ", "+7", "1_000", "٣", "0x10", "7.0", "1" * 25, ""])
def test_query_integers_are_ascii_digits_only(url: str, value: str) -> None:
    response = httpx.get(f"{url}/generate", params={"seed": value})
    assert response.status_code == 422, response.text
    assert "ASCII digits" in response.json()["detail"]


def test_an_aborted_upload_is_no_server_error_and_logs_no_traceback(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = url.removeprefix("http://").split(":")
    caplog.set_level(logging.INFO)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /balance HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"counts": ['
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while "serving.client_gone" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.05)
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert not server_errors(url)
    assert 'status="499"' in httpx.get(f"{url}/metrics").text


def test_options_names_every_method_of_the_path(url: str) -> None:
    response = httpx.request("OPTIONS", f"{url}/generate")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert "detail" in response.json()


# -- the OpenAPI document --------------------------------------------------------------------------


def test_openapi_documents_every_parameter_status_and_the_admin_auth(url: str) -> None:
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "$defs" not in str(spec)  # every reference resolvable
    paths = spec["paths"]
    query = {p["name"]: p["schema"] for p in paths["/generate"]["get"]["parameters"]}
    assert set(query) == {
        "seed",
        "batch_size",
        "digits",
        "format",
        "min_confidence",
        "max_candidates",
        "model",
    }
    assert query["max_candidates"]["maximum"] == 1024
    assert query["batch_size"]["maximum"] == 1024
    post_generate = paths["/generate"]["post"]
    statuses = {"200", "400", "404", "408", "409", "413", "415", "422", "503"}  # 404: no model
    assert set(post_generate["responses"]) == statuses
    assert "X-Filter-Acceptance-Rate" in post_generate["responses"]["200"]["headers"]
    assert "Retry-After" in post_generate["responses"]["503"]["headers"]
    balance = paths["/balance"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    counts = balance["properties"]["counts"]["anyOf"]
    assert counts[0]["minItems"] == counts[0]["maxItems"] == 10  # `counts: []` is not valid
    assert counts[1]["additionalProperties"] is False
    assert balance["examples"]
    reload = paths["/admin/reload"]["post"]
    assert reload["security"] == [{"adminToken": []}]
    assert paths["/admin/model"]["get"]["security"] == [{"adminToken": []}]
    assert set(paths["/admin/model"]["get"]["responses"]) == {"200", "401", "403", "404", "503"}
    assert set(reload["responses"]) == {"200", "401", "403", "404", "409", "503"}
    assert spec["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"


# -- scheduling ------------------------------------------------------------------------------------


def _balance_in_background(url: str, total: int) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    per_class = total // 10

    def run() -> None:
        body = {"counts": [0] * 10, "target": per_class, "seed": 1}
        result.append(httpx.post(f"{url}/balance", json=body, timeout=300))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _wait_for_backlog(url: str, at_least: int) -> None:
    deadline = time.monotonic() + 30
    while _metric(url, "dcgan_backlog_images") < at_least:
        assert time.monotonic() < deadline, "the large request never queued"
        time.sleep(0.01)


@pytest.mark.parametrize("batching", [True, False])
def test_a_small_request_is_answered_while_a_large_one_runs(
    registry: ModelRegistry, tmp_path: Path, batching: bool
) -> None:
    app = create_app(
        settings(batching=batching, batch_max_images=64, workers=1, threads=1),
        registry,
        cache_dir=tmp_path / "c",
    )
    with serving(app) as base:
        thread, result = _balance_in_background(base, 20_000)
        _wait_for_backlog(base, 10_000)
        small = httpx.post(f"{base}/generate", json={"batch_size": 1, "format": "npy"}, timeout=60)
        backlog_after_small = _metric(base, "dcgan_backlog_images")
        thread.join(timeout=300)
    assert small.status_code == 200
    assert backlog_after_small > 1000, "the small request waited for the large one to finish"
    assert result and result[0].status_code == 200


def test_the_work_of_a_client_that_hung_up_is_dropped(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    app = create_app(
        settings(batch_max_images=64, workers=1, threads=1), registry, cache_dir=tmp_path / "c"
    )
    with serving(app) as base:
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{base}/balance", json={"counts": [0] * 10, "target": 5000}, timeout=0.5)
        deadline = time.monotonic() + 10
        while _metric(base, "dcgan_backlog_images") > 0:
            assert time.monotonic() < deadline, "the dropped request's rows stayed queued"
            time.sleep(0.02)
        computed = _metric(base, "dcgan_inference_batch_images_sum")
        time.sleep(0.5)
        assert _metric(base, "dcgan_inference_batch_images_sum") == computed  # nothing more runs
        assert computed < 50_000
        assert 'route="/balance",status="499"' in httpx.get(f"{base}/metrics").text


@pytest.mark.parametrize("batching", [True, False])
def test_a_full_queue_refuses_whole_requests_with_a_measured_retry_after(
    registry: ModelRegistry, tmp_path: Path, batching: bool
) -> None:
    app = create_app(
        settings(
            batching=batching,
            batch_max_images=32,
            workers=1,
            threads=1,
            max_balance_images=20_000,
            max_queue_images=20_000,
        ),
        registry,
        cache_dir=tmp_path / "c",
    )
    with serving(app) as base:
        thread, result = _balance_in_background(base, 20_000)
        _wait_for_backlog(base, 15_000)
        refused = httpx.post(f"{base}/balance", json={"counts": [0] * 10, "target": 1000})
        computed_before = _metric(base, "dcgan_inference_batch_images_sum")
        small = httpx.post(f"{base}/generate", json={"batch_size": 1})
        thread.join(timeout=300)
        computed = _metric(base, "dcgan_inference_batch_images_sum")
    assert refused.status_code == 503, refused.text
    assert "server busy" in refused.json()["detail"]
    retry = int(refused.headers["retry-after"])
    assert retry >= 1
    # Only the admitted requests were computed: none of the refused one's 10,000 rows.
    # (Warm-up calls bypass the batcher: every computed row is an admitted request's.)
    assert result[0].status_code == 200
    assert computed_before <= 20_000
    assert computed == 20_000 + (1 if small.status_code == 200 else 0), computed
