"""An HTTP proxy in front of the real S3 test server that misbehaves on purpose, the way some S3
servers and networks do: it loses the answer to a PUT after the server stored it, or it plays a
server that ignores PUT preconditions (If-None-Match / If-Match are removed and the request is
signed again with the same credentials, so the server accepts it)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from minio.credentials import Credentials
from minio.signer import sign_v4_s3

CONDITIONS = ("if-none-match", "if-match")


@dataclass
class Misbehaviour:
    access_key: str
    secret_key: str
    ignore_conditions: bool = False
    drop_answers: int = 0  # answers of conditional PUTs to lose, after the server stored them
    dropped: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_drop(self, path: str) -> bool:
        with self.lock:
            if self.drop_answers <= 0:
                return False
            self.drop_answers -= 1
            self.dropped.append(path)
            return True


def _resign(
    headers: dict[str, str], method: str, path: str, rules: Misbehaviour, authorization: str
) -> None:  # minio's signer takes its own header mapping type
    """Remove the preconditions and sign the request again (SigV4, the client's own scope)."""
    lowered = {key.lower(): key for key in headers}
    for name in (*CONDITIONS, "authorization"):
        headers.pop(lowered.get(name, name), None)
    scope = dict(item.split("=", 1) for item in _auth_parts(authorization))
    region = scope["Credential"].split("/")[2]
    date = datetime.strptime(headers[lowered["x-amz-date"]], "%Y%m%dT%H%M%SZ")
    signed = sign_v4_s3(
        method=method,
        url=urlsplit(f"http://{headers[lowered['host']]}{path}"),
        region=region,
        headers=headers,
        credentials=Credentials(rules.access_key, rules.secret_key),
        content_sha256=headers[lowered["x-amz-content-sha256"]],
        date=date,
    )
    headers.update({key: str(value) for key, value in signed.items()})


def _auth_parts(authorization: str) -> list[str]:
    return [part.strip() for part in authorization.split(" ", 1)[1].split(",")]


@contextmanager
def misbehaving_proxy(upstream: str, rules: Misbehaviour) -> Iterator[str]:
    """Serve on a free loopback port; yields its ``host:port`` endpoint."""
    host, port = upstream.split(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                parts = []
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers, then the blank line
                    pass
                return b"".join(parts)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _forward(self) -> None:
            body = self._body()
            headers = {
                key: value
                for key, value in self.headers.items()
                if key.lower() not in ("transfer-encoding", "content-length")
            }
            headers["Content-Length"] = str(len(body))
            conditional = any(key.lower() in CONDITIONS for key in headers)
            if conditional and self.command == "PUT" and rules.ignore_conditions:
                authorization = self.headers.get("Authorization", "")
                _resign(headers, self.command, self.path, rules, authorization)
            upstream_conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                answer = upstream_conn.getresponse()
                payload = answer.read()
            finally:
                upstream_conn.close()
            if conditional and self.command == "PUT" and rules.take_drop(self.path):
                self.close_connection = True  # stored upstream; the client never hears it
                return
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            length = answer.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
