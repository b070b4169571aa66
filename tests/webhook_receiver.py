"""A webhook receiver on loopback for tests: verifies each signature, records the events."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

WEBHOOK_SECRET = "webhook-secret-for-tests"


@dataclass
class HookReceiver:
    """An HTTP server on loopback that fails the first `failures` requests."""

    failures: int
    accepted: list[dict[str, object]] = field(default_factory=list)
    refused: int = 0
    bad_signatures: int = 0
    url: str = ""


@contextlib.contextmanager
def serve(state: HookReceiver) -> Iterator[HookReceiver]:
    """state's receiver, serving on a free loopback port for the block."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            timestamp = self.headers["X-Routemail-Timestamp"]
            expected = hmac.new(
                WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(expected, self.headers["X-Routemail-Signature"]):
                state.bad_signatures += 1
                self.send_response(401)
            elif state.refused < state.failures:
                state.refused += 1
                self.send_response(500)
            else:
                state.accepted.append(json.loads(body))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
