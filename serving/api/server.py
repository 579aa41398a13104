"""The HTTP server around the app: uvicorn with the service's limits and a graceful SIGTERM.

Every connection's life is bounded without the client's help:
- uvicorn has no time limit on a request's headers, so a client that trickles them would hold its
  connection for ever (slowloris). ``GuardedProtocol`` closes a connection whose request line and
  headers are not complete within ``header_timeout_s`` of the connection or of the request's first
  byte; the body's own limit is the app's (serving/api/deps.py, 408).
- Nor on sending: a client that asks for a large answer and stops reading it would hold the
  connection (and the answer's memory) for ever. ``GuardedProtocol`` resets a connection whose
  client has taken none of what waits to be sent for ``send_timeout_s``; a slow client that keeps
  taking some is not cut.
- uvicorn's ``limit_concurrency`` counts open connections, held ones included, and then answers
  everything 503, the liveness probe too: a few such clients would get a healthy pod restarted.
  ``ConcurrencyLimit`` counts requests in the app instead and gives the health probes a budget of
  their own, so a server at its limit still says it is alive.

On SIGTERM the server first drains: ``/readyz`` answers 503 at once while everything else is still
served for ``drain_s`` (load balancers and Kubernetes endpoints stop sending), then it stops
accepting, lets the requests in flight finish within ``shutdown_grace_s`` and ends (uvicorn then
re-raises the SIGTERM, so the exit status says "terminated"). A second signal, or SIGINT, stops
it at once the usual way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import struct
import threading
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.api.http_errors import error_response
from serving.api.settings import ServeSettings

log = logging.getLogger("serving.api.server")

# What load balancers and Kubernetes ask; never refused for want of room taken by other requests.
PROBES = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
# Probes in the app at once: each answers at once, so only a flood of them meets this bound.
PROBE_CONCURRENCY = 32
RETRY_AFTER_S = 1


class GuardedProtocol(HttpToolsProtocol):
    """HTTP/1.1 (httptools) that closes a connection whose headers take too long, or whose client
    stops taking its answer (see the module docstring)."""

    header_timeout_s = 10.0  # both set per server by ``guarded_protocol``
    send_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting in the transport when last checked ...
        self._unsent_since = 0.0  # ... and since when none of them was taken

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Pause (and so watch the sending) as soon as anything waits that the kernel did not
        # take: a small answer left unread is held as surely as a large one.
        transport.set_write_buffer_limits(high=0)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._unsent = self.transport.get_write_buffer_size()
            self._unsent_since = self.loop.time()
            self._send_timer = self.loop.call_later(self.send_timeout_s / 4, self._check_send)

    def resume_writing(self) -> None:
        self._stop_watching_send()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_watching_send()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.info("serving.header_timeout client=%s", self.client)
            self.transport.close()

    def _check_send(self) -> None:
        """Every quarter of the timeout while output waits: did the client take any of it?"""
        self._send_timer = None
        unsent, now = self.transport.get_write_buffer_size(), self.loop.time()
        if unsent < self._unsent:
            self._unsent, self._unsent_since = unsent, now
        elif now - self._unsent_since >= self.send_timeout_s:
            log.info("serving.send_timeout client=%s unsent_bytes=%d", self.client, unsent)
            self._reset()
            return
        self._send_timer = self.loop.call_later(self.send_timeout_s / 4, self._check_send)

    def _stop_watching_send(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _reset(self) -> None:
        """Drop the connection and what waits in it, the kernel's copy too (a plain close
        would wait for the client to read it): the client sees a reset."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def guarded_protocol(header_timeout_s: float, send_timeout_s: float) -> type[GuardedProtocol]:
    attrs = {"header_timeout_s": header_timeout_s, "send_timeout_s": send_timeout_s}
    return type("Guarded", (GuardedProtocol,), attrs)


class ConcurrencyLimit:
    """At most ``limit`` requests in the app at once (more: 503 + Retry-After), the health
    probes (:data:`PROBES`) counted apart against ``probe_limit``. A request counts until the
    app has handed over its whole answer, so an answer stuck in a client that does not read
    counts until the send timeout resets its connection."""

    def __init__(self, app: ASGIApp, limit: int, probe_limit: int = PROBE_CONCURRENCY) -> None:
        self.app = app
        self._limits = {False: limit, True: probe_limit}
        self._in_flight = {False: 0, True: 0}  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        probe = scope["path"] in PROBES
        if self._in_flight[probe] >= self._limits[probe]:
            log.warning("serving.concurrency_limit probe=%s limit=%d", probe, self._limits[probe])
            detail = f"the server is at its limit of {self._limits[probe]} requests at once: retry"
            retry = {"Retry-After": str(RETRY_AFTER_S)}
            await error_response(503, detail, retry, scope["path"])(scope, receive, send)
            return
        self._in_flight[probe] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight[probe] -= 1


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM drains (see the module docstring) before it stops."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_s = drain_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._draining:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self.app.state.service.draining = True
        log.info("serving.draining seconds=%s", self.drain_s)
        timer = threading.Timer(self.drain_s, super().handle_exit, args=(sig, frame))
        timer.daemon = True
        timer.start()


def run(app: FastAPI, settings: ServeSettings) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, with the limits of ``settings``."""
    config = uvicorn.Config(
        ConcurrencyLimit(app, settings.limit_concurrency),
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(settings.header_timeout_s, settings.send_timeout_s),
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        limit_concurrency=None,  # ConcurrencyLimit counts requests, not held connections
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        log_level="warning",
    )
    DrainingServer(config, app, settings.drain_s).run()
