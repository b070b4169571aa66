"""Signed POST of a message to the receiver: used by the Lambda and `mailxfer post`.

Only a receipt counts: a 200 whose JSON names the queue id and echoes the
SHA-256 of the body that was signed. Anything else (a web page at a mistyped
URL, a proxy's error, a receiver that stored other bytes) is a failure that
says what came back.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import io
import json
import re
import select
import socket
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, BinaryIO

from mailxfer.signing import signed_headers

CHUNK = 1 << 16
# How long to wait for "100 Continue" (or an early refusal) before sending
# the body anyway, for servers that do not answer Expect: 100-continue.
CONTINUE_WAIT = 1.0
MAX_INTERIM_LINE = 8192
MAX_ANSWER = 64 * 1024  # a receipt is a line of JSON; a web page is only quoted
_QUEUE_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass(frozen=True)
class PostResult:
    status: int
    body: str
    sha256: str = ""
    location: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Receipt:
    """The receiver's proof that it stored the body: its queue id, and whether it had it."""

    id: str
    duplicate: bool


class NotAReceipt(ValueError):
    """The receiver's answer does not prove the message was stored; the text says what came."""


def sha256_of(stream: BinaryIO) -> tuple[str, int]:
    """Hex digest and length of a seekable stream, which is left rewound."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return digest.hexdigest(), size


def post_message(
    url: str,
    secret: bytes,
    body: BinaryIO,
    recipients: list[str],
    verdicts: dict[str, str],
    *,
    timeout: float = 60.0,
    now: float | None = None,
) -> PostResult:
    """POST a seekable message stream, signed; never raises for an HTTP status.

    Raises OSError when no answer could be had at all.
    """
    digest, size = sha256_of(body)
    headers = signed_headers(secret, int(now or time.time()), recipients, verdicts, digest)
    headers["Content-Type"] = "message/rfc822"
    headers["Content-Length"] = str(size)
    headers["Expect"] = "100-continue"
    status, text, location = _exchange(url, headers, body, timeout)
    return PostResult(status, text, digest, location)


def receipt_of(result: PostResult) -> Receipt:
    """The receipt in a receiver's answer, or NotAReceipt saying what came back instead."""
    if result.status != 200:
        where = f" (Location: {result.location})" if result.location else ""
        raise NotAReceipt(f"answered {result.status}{where}: {error_text(result)}")
    try:
        data: Any = json.loads(result.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise NotAReceipt(f"answered 200 with {_excerpt(result.body)}, which is not a receipt")
    queue_id, echoed = data.get("id"), data.get("sha256")
    if not isinstance(queue_id, str) or not _QUEUE_ID.fullmatch(queue_id):
        raise NotAReceipt(f"answered 200 without a queue id: {_excerpt(result.body)}")
    if not isinstance(echoed, str) or not hmac.compare_digest(echoed, result.sha256):
        raise NotAReceipt(
            f"answered 200 for {queue_id} with sha256 {str(echoed)[:80]!r}, but the body "
            f"sent has sha256 {result.sha256}"
        )
    return Receipt(queue_id, data.get("duplicate") is True)


def error_text(result: PostResult) -> str:
    """The receiver's JSON error message, or its raw body."""
    try:
        return " ".join(str(json.loads(result.body)["error"]).split())[:300]
    except (ValueError, TypeError, KeyError):
        return _excerpt(result.body)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return repr(text[:120] + ("..." if len(text) > 120 else "")) if text else "an empty body"


def _exchange(
    url: str, headers: dict[str, str], body: BinaryIO, timeout: float
) -> tuple[int, str, str]:
    """Send the request, the body only once the server lets us; status, text and Location."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionError(f"{url!r} is not an http:// or https:// URL")
    conn = _connection(parts, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        assert conn.sock is not None
        early = _interim_answer(conn.sock, CONTINUE_WAIT)
        if early is None:
            # Refused before the end of the body? Its answer may still be there to read.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.send(body)
            response = conn.getresponse()
        else:
            response = http.client.HTTPResponse(
                _Replay(conn.sock, early),  # type: ignore[arg-type]  # only makefile() is used
                method="POST",
            )
            response.begin()
        text = response.read(MAX_ANSWER).decode("utf-8", "replace")
        return response.status, text, response.getheader("Location") or ""
    except http.client.HTTPException as exc:
        raise ConnectionError(f"no HTTP answer: {exc!r}") from None
    finally:
        conn.close()


def _connection(parts: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    """A connection to the URL's host: straight, or tunnelled (CONNECT) through the
    proxy urllib would use ($https_proxy or $http_proxy, unless $no_proxy names the host)."""
    https = parts.scheme == "https"
    connection = http.client.HTTPSConnection if https else http.client.HTTPConnection
    host = parts.hostname or ""
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return connection(host, parts.port, timeout=timeout, blocksize=CHUNK)
    via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    conn = connection(via.hostname or "", via.port or 80, timeout=timeout, blocksize=CHUNK)
    headers = {}
    if via.username:
        user = urllib.parse.unquote(via.username)
        password = urllib.parse.unquote(via.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Proxy-Authorization"] = f"Basic {token}"
    conn.set_tunnel(host, parts.port or (443 if https else 80), headers)
    return conn


def _interim_answer(sock: socket.socket, wait: float) -> bytes | None:
    """None to go on with the body (100 Continue, or no word within `wait`);
    otherwise the status line of the server's early, final answer."""
    pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
    if not pending and not select.select([sock], [], [], wait)[0]:
        return None
    raw = sock.makefile("rb", buffering=0)  # unbuffered: read no further than asked
    # Over TLS, readable may mean only a session ticket: wait no longer than `wait`.
    previous = sock.gettimeout()
    sock.settimeout(wait)
    try:
        line = raw.readline(MAX_INTERIM_LINE)
        if line.split(b" ", 2)[1:2] != [b"100"]:
            return bytes(line)
        while raw.readline(MAX_INTERIM_LINE) not in (b"\r\n", b"\n", b""):
            pass  # the interim answer's header fields, if any
    except TimeoutError:
        pass
    finally:
        sock.settimeout(previous)
    return None


class _Replay:
    """The socket as HTTPResponse reads it, with the bytes already taken off it put back."""

    def __init__(self, sock: socket.socket, taken: bytes) -> None:
        self.sock = sock
        self.taken = taken

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_Prefixed(self.taken, self.sock.makefile("rb", buffering=0)))


class _Prefixed(io.RawIOBase):
    def __init__(self, prefix: bytes, rest: Any) -> None:
        self.prefix = prefix
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n], self.prefix = self.prefix[:n], self.prefix[n:]
            return n
        return int(self.rest.readinto(buffer) or 0)
