"""A bounded async HTTP/1.1 load generator: N keep-alive connections, one request in flight each.

Hand-written over asyncio streams rather than httpx because on a 2-core machine the client shares
the CPU with the server: a lean client (a few tens of microseconds per request) leaves the cores to
the server being measured. Only what the benchmark needs: POST with a JSON body, Content-Length
responses.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_s: list[float]
    images: int

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)

        def pct(p: float) -> float:
            return (
                ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")
            )

        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images / self.seconds, 1) if self.seconds else 0.0,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(pct(0.50) * 1000, 2),
            "p99_ms": round(pct(0.99) * 1000, 2),
        }


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body


def build_post(url: str, body: dict[str, Any]) -> bytes:
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    return (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def _run(
    url: str,
    bodies: list[dict[str, Any]],
    concurrency: int,
    min_requests: int,
    min_seconds: float,
    max_seconds: float,
    images_per_request: int,
) -> LoadResult:
    parts = urlsplit(url)
    raws = [build_post(url, body) for body in bodies]
    connections = [
        _Connection(*await asyncio.open_connection(parts.hostname, parts.port))
        for _ in range(concurrency)
    ]
    latencies: list[float] = []
    errors = 0
    done = 0
    started = time.perf_counter()

    async def worker(conn: _Connection, offset: int) -> None:
        nonlocal errors, done
        i = offset
        while True:
            elapsed = time.perf_counter() - started
            if elapsed >= max_seconds or (done >= min_requests and elapsed >= min_seconds):
                return
            t0 = time.perf_counter()
            status, _ = await conn.request(raws[i % len(raws)])
            latencies.append(time.perf_counter() - t0)
            done += 1
            errors += status != 200
            i += concurrency

    try:
        await asyncio.gather(*(worker(c, i) for i, c in enumerate(connections)))
    finally:
        for conn in connections:
            conn.writer.close()
    seconds = time.perf_counter() - started
    good = len(latencies) - errors
    return LoadResult(len(latencies), errors, seconds, latencies, good * images_per_request)


def run_load(
    url: str,
    bodies: list[dict[str, Any]],
    *,
    concurrency: int,
    images_per_request: int,
    min_requests: int = 20,
    min_seconds: float = 2.0,
    max_seconds: float = 30.0,
) -> LoadResult:
    """Send ``bodies`` (cycled) from ``concurrency`` connections until both minimums are met."""
    return asyncio.run(
        _run(url, bodies, concurrency, min_requests, min_seconds, max_seconds, images_per_request)
    )
