"""Server limits on a real ``dcgan serve`` process: slow headers and bodies are cut off, a client
that stops reading its answer is reset, the health probes answer while slow clients hold every
request slot, and SIGTERM drains (/readyz 503 at once, requests in flight finish, then the
process ends)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from serving.api.settings import ServeSettings
from tests.serving.live import ServerProcess, dcgan_serve


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(15)
    return sock


def _read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response (headers and a Content-Length body may come in separate reads)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = _content_length(head)
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    return head + b"\r\n\r\n" + body


def _content_length(head: bytes) -> int:
    return next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )


def test_a_client_trickling_its_headers_is_disconnected(
    published_registry: Path, tmp_path: Path
) -> None:
    with dcgan_serve(published_registry, tmp_path, header_timeout_s="1") as server:
        for opening in (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"):  # silent, then slow
            with _connect(server.url) as sock:
                sock.sendall(opening)
                started = time.monotonic()
                assert sock.recv(1024) == b""  # closed by the server
                assert time.monotonic() - started < 5
        # A prompt client on a kept-alive connection is not affected.
        with httpx.Client(base_url=server.url) as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
                time.sleep(1.2)


def test_a_client_trickling_its_body_gets_408(published_registry: Path, tmp_path: Path) -> None:
    with dcgan_serve(published_registry, tmp_path, body_timeout_s="1") as server:
        with _connect(server.url) as sock:
            sock.sendall(
                b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            started = time.monotonic()
            answer = _read_response(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"not received within 1 s" in answer
        assert time.monotonic() - started < 5
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_sigterm_drains_then_finishes_in_flight_requests_and_exits(
    published_registry: Path, tmp_path: Path
) -> None:
    with dcgan_serve(
        published_registry, tmp_path, drain_s="1.5", workers="1", threads="1"
    ) as server:
        result: dict[str, Any] = {}

        def large() -> None:
            body = {"counts": [0] * 10, "target": 6000, "seed": 3}
            result["answer"] = httpx.post(f"{server.url}/balance", json=body, timeout=120)

        thread = threading.Thread(target=large)
        thread.start()
        deadline = time.monotonic() + 30
        while "dcgan_backlog_images 0.0" in httpx.get(f"{server.url}/metrics").text:
            assert time.monotonic() < deadline, "the /balance never started"
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and ready.json()["last_error"] == "shutting down"
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # still serving
        thread.join(timeout=120)
        # Ended by SIGTERM's own status (uvicorn re-raises the signal after a clean shutdown).
        assert server.process.wait(timeout=60) == -signal.SIGTERM
    answer = result["answer"]
    assert answer.status_code == 200, answer.text
    with np.load(io.BytesIO(answer.content)) as npz:
        assert npz["images"].shape == (60_000, 28, 28)
    assert "Traceback" not in server.log.read_text()


# --- clients that hold their connections ------------------------------------------------------

SLOTS = 3  # DCGAN_SERVE_LIMIT_CONCURRENCY of the server below
SEND_TIMEOUT_S = 2.0
LARGE = 20_000  # images per answer: a 15.7 MB .npy, far more than a connection's kernel buffers
PROBES = ("/healthz", "/readyz", "/v2/health/live")


@pytest.fixture(scope="module")
def held_server(
    published_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with dcgan_serve(
        published_registry,
        tmp_path_factory.mktemp("held"),
        limit_concurrency=str(SLOTS),
        send_timeout_s=str(SEND_TIMEOUT_S),
        body_timeout_s="120",  # the trickling bodies below hold their slots for the whole test
        max_batch_size=str(LARGE),
    ) as server:
        yield server


def test_the_send_timeout_is_a_setting() -> None:
    """DCGAN_SERVE_SEND_TIMEOUT_S, declared once with the other server limits."""
    assert ServeSettings(_env_file=None, send_timeout_s=5).send_timeout_s == 5  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="send_timeout_s"):
        ServeSettings(_env_file=None, send_timeout_s=0)  # type: ignore[call-arg]


def _request(batch_size: int) -> bytes:
    body = json.dumps({"seed": 5, "batch_size": batch_size, "format": "npy"}).encode()
    head = "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _asking(url: str, request: bytes, receive_buffer: int) -> socket.socket:
    """A connection that sent ``request``, with a receive buffer of about ``receive_buffer``."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before the handshake
    sock.connect((host, int(port)))
    sock.sendall(request)
    return sock


def _probes_answer(url: str) -> None:
    for path in PROBES:
        answer = httpx.get(f"{url}{path}", timeout=10)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)


def test_probes_answer_while_slow_clients_hold_every_request_slot(
    held_server: ServerProcess,
) -> None:
    url = held_server.url
    held = [_connect(url) for _ in range(SLOTS)]
    try:
        for sock in held:  # each request stays in the app, waiting for the rest of its body
            sock.sendall(
                b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
        deadline = time.monotonic() + 30
        while (refused := httpx.post(f"{url}/generate", json={"batch_size": 1})).status_code == 200:
            assert time.monotonic() < deadline, "the request limit never took effect"
            time.sleep(0.05)
        _probes_answer(url)  # the server is full, and alive and ready
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert f"limit of {SLOTS} requests" in refused.json()["detail"]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 30
    while httpx.post(f"{url}/generate", json={"batch_size": 1}).status_code != 200:
        assert time.monotonic() < deadline, "the slots were not given back"
        time.sleep(0.05)


def _reset_seen(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET


def test_a_client_that_stops_reading_is_reset_after_the_send_timeout(
    held_server: ServerProcess,
) -> None:
    url = held_server.url
    started = time.monotonic()
    stalled = [_asking(url, _request(LARGE), 4096) for _ in range(SLOTS)]
    reset_after: dict[int, float] = {}
    try:
        deadline = started + 90
        while len(reset_after) < len(stalled):
            assert time.monotonic() < deadline, f"reset only {sorted(reset_after)}"
            _probes_answer(url)
            for i, sock in enumerate(stalled):
                if i not in reset_after and _reset_seen(sock):
                    reset_after[i] = time.monotonic() - started
            time.sleep(0.1)
        # Reset no sooner than the timeout; what they did receive is a cut-off answer.
        assert min(reset_after.values()) >= SEND_TIMEOUT_S - 0.1, reset_after
        for sock in stalled:
            received = 0
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(1 << 16):
                    received += len(chunk)
            assert received < LARGE * 28 * 28
    finally:
        for sock in stalled:
            sock.close()
    answer = httpx.post(f"{url}/generate", json={"batch_size": 2, "format": "npy"}, timeout=30)
    assert answer.status_code == 200
    assert "Traceback" not in held_server.log.read_text()


def test_a_slow_client_that_keeps_reading_gets_its_whole_answer(
    held_server: ServerProcess,
) -> None:
    """It takes several send timeouts to read, but never stops: it is not cut off."""
    started = time.monotonic()
    with contextlib.closing(_asking(held_server.url, _request(LARGE), 1 << 16)) as sock:
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(1 << 16)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = _content_length(head)
        parts = [body]
        received = len(body)
        while received < length:
            chunk = sock.recv(1 << 16)
            assert chunk, f"cut off after {received} of {length} bytes"
            parts.append(chunk)
            received += len(chunk)
            time.sleep(0.02)  # about 3 MB/s at most
    images = np.load(io.BytesIO(b"".join(parts)))
    assert images.shape == (LARGE, 28, 28)
    assert time.monotonic() - started > 2 * SEND_TIMEOUT_S
