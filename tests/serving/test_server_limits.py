"""Server limits on a real ``dcgan serve`` process: slow headers and bodies are cut off, and
SIGTERM drains (/readyz 503 at once, requests in flight finish, then the process ends)."""

from __future__ import annotations

import io
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.serving.live import dcgan_serve


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
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    return head + b"\r\n\r\n" + body


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
