"""The HTTP server around the app: uvicorn with the service's limits and a graceful SIGTERM.

uvicorn has keep-alive, concurrency and graceful-shutdown settings but no time limit on a
request's headers, so a client that opens connections and trickles its headers holds them for
ever (slowloris). ``HeaderTimeoutProtocol`` closes a connection whose request line and headers
are not complete within ``header_timeout_s`` of the connection or of the request's first byte;
the body's own limit is the app's (serving.app, 408).

On SIGTERM the server first drains: ``/readyz`` answers 503 at once while everything else is still
served for ``drain_s`` (load balancers and Kubernetes endpoints stop sending), then it stops
accepting, lets the requests in flight finish within ``shutdown_grace_s`` and ends (uvicorn then
re-raises the SIGTERM, so the exit status says "terminated"). A second signal, or SIGINT, stops
it at once the usual way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.settings import ServeSettings

log = logging.getLogger("serving.server")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """HTTP/1.1 (httptools) that closes a connection whose headers take too long."""

    header_timeout_s = 10.0  # set per server by ``protocol_with_header_timeout``

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
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


def protocol_with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeout", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})


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
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_with_header_timeout(settings.header_timeout_s),
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        limit_concurrency=settings.limit_concurrency,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        log_level="warning",
    )
    DrainingServer(config, app, settings.drain_s).run()
