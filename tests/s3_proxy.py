"""An S3 endpoint on a loopback port that passes requests on to moto, failing some as told.

With refuse_deletes, DELETE answers S3's 500 InternalError. With stall, a GET of an
object sends its headers and the first half of its bytes, then nothing more until the
test sets `release` (`stalled` is set once the half is out): a reader caught mid-object.
Every request passed on is listed in `seen`.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

HOP_BY_HOP = ("content-length", "transfer-encoding", "connection", "date", "server")


@dataclass
class Proxy:
    url: str
    target: str
    refuse_deletes: bool = False
    stall: bool = False
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    seen: list[str] = field(default_factory=list)  # "METHOD /path" of every request


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Any

    @property
    def proxy(self) -> Proxy:
        proxy: Proxy = self.server.proxy
        return proxy

    def _forward(self) -> None:
        self.proxy.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        request = urllib.request.Request(
            self.proxy.target + self.path,
            data=self.rfile.read(length) if length else None,
            method=self.command,
            headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
        )
        try:
            response = urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:
            response = exc
        with response:
            status, headers, payload = response.status, response.headers, response.read()
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if self.proxy.stall and self.command == "GET" and status == 200 and len(payload) > 1:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.proxy.stalled.set()
            self.proxy.release.wait(60)
            self.close_connection = True
            return
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_HEAD = _forward

    def do_DELETE(self) -> None:
        if not self.proxy.refuse_deletes:
            self._forward()
            return
        error = b"<Error><Code>InternalError</Code><Message>refused by the test</Message></Error>"
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(error)))
        self.end_headers()
        self.wfile.write(error)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def s3_proxy(target: str, *, refuse_deletes: bool = False, stall: bool = False) -> Iterator[Proxy]:
    """The proxy in front of target (moto's URL), on a free loopback port, for the block."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    proxy = Proxy(f"http://127.0.0.1:{server.server_address[1]}", target, refuse_deletes, stall)
    server.proxy = proxy  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release.set()
        server.shutdown()
        server.server_close()
