"""mailxfer's signed POST against web servers on loopback that behave in other ways than
the receiver: ones that ignore Expect: 100-continue (over HTTP and HTTPS), a redirect, and
a forward proxy in between."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailxfer.post import NotAReceipt, post_message, receipt_of
from tests.nginx import self_signed

PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
MESSAGE = b"From: ann@example.com\r\nSubject: hi\r\n\r\n" + b"body line\r\n" * 20_000


class Silent(http.server.BaseHTTPRequestHandler):
    """Never says 100 Continue; answers a receipt for the body it read, or a redirect."""

    protocol_version = "HTTP/1.1"
    received: list[bytes] = []

    def handle_expect_100(self) -> bool:
        return True  # go on to do_POST without a word, as servers that ignore Expect do

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(body)
        if self.path == "/moved":
            self.answer(301, b"", [("Location", "https://lists.example.org/mailrecv")])
            return
        receipt = {"id": "x" * 22, "duplicate": False, "sha256": hashlib.sha256(body).hexdigest()}
        self.answer(200, json.dumps(receipt).encode(), [("Content-Type", "application/json")])

    def answer(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def silent_server(context: ssl.SSLContext | None = None) -> Iterator[str]:
    """A Silent server on loopback (over TLS with a context); its base URL."""
    Silent.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        scheme = "https" if context else "http"
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def post(url: str) -> Any:
    return post_message(url, b"secret", io.BytesIO(MESSAGE), ["v@lists.example.org"], PASS)


def test_a_server_ignoring_expect_still_gets_the_body() -> None:
    """With no 100 Continue and no early answer, the body is sent after the wait."""
    with silent_server() as base:
        receipt = receipt_of(post(base + "/mailrecv"))
    assert receipt.id == "x" * 22
    assert Silent.received == [MESSAGE]


def test_over_tls_a_server_ignoring_expect_still_gets_the_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same over HTTPS, where a readable socket may carry only TLS session tickets."""
    tls = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    with silent_server(context) as base:
        receipt_of(post(base + "/mailrecv"))
    assert Silent.received == [MESSAGE]


def test_a_redirect_is_not_a_receipt() -> None:
    """A 301 (say, http:// to https://) is not followed with the body: it fails, naming
    where it points."""
    with silent_server() as base:
        result = post(base + "/moved")
    with pytest.raises(NotAReceipt, match=r"answered 301 \(Location: https://lists"):
        receipt_of(result)


@contextlib.contextmanager
def connect_proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A forward proxy on loopback that tunnels CONNECT requests; its URL and the request
    heads it was sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def tunnel(client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := client.recv(4096)):
                head += chunk
            heads.append(head)
            host, _, port = head.split()[1].decode().rpartition(":")
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                ends = [client, upstream]
                while True:
                    for ready in select.select(ends, [], [], 30)[0]:
                        data = ready.recv(65536)
                        if not data:
                            return
                        (upstream if ready is client else client).sendall(data)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                threading.Thread(target=tunnel, args=(client,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://user:p%40ss@127.0.0.1:{listener.getsockname()[1]}", heads
    finally:
        listener.close()


def test_posts_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With $http_proxy set, as urllib would, the post is tunnelled through that proxy,
    with its credentials, and the receipt comes back through it."""
    with connect_proxy() as (proxy, heads), silent_server() as base:
        monkeypatch.setenv("http_proxy", proxy)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        receipt_of(post(base + "/mailrecv"))
    assert Silent.received == [MESSAGE]
    (head,) = heads
    target = base.removeprefix("http://").encode()
    assert head.startswith(b"CONNECT " + target + b" HTTP/1.")
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in head
