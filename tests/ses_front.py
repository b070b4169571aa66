"""An HTTP server in front of moto's SES: records, delays or refuses sends, and counts.

Tests of the SES transport put it between routemail and moto server: it can
answer a send with an SES error in its real wire shape, add latency to every
request (as a real endpoint far away would), and counts what moto accepted and
how many calls were in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

DOMAIN = "lists.example.org"
SEND_PATH = "/v2/email/outbound-emails"


@dataclass
class Fault:
    status: int
    code: str
    message: str


@dataclass
class Front:
    """An HTTP server between the transport and moto: it records each request and can
    answer a send with an SES error in its real wire shape instead of forwarding it."""

    backend: str
    faults: list[Fault] = field(default_factory=list)  # answered to the next sends, in order
    refuse: dict[str, Fault] = field(default_factory=dict)  # by recipient, every time
    sends: list[dict[str, Any]] = field(default_factory=list)
    other_requests: list[str] = field(default_factory=list)
    url: str = ""
    delay: float = 0.0  # seconds added to every request before it is answered
    accepted: Counter[str] = field(default_factory=Counter)  # recipients moto took
    accepted_at: list[float] = field(default_factory=list)  # time.monotonic() of each
    throttled: int = 0  # sends moto answered 429 (never expected)
    in_flight: int = 0
    most_in_flight: int = 0  # the most sends being answered at the same time
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != SEND_PATH:
                    front.other_requests.append(body.decode())
                    self.forward(body)
                    return
                request = json.loads(body)
                recipient = request["Destination"]["ToAddresses"][0]
                with front.lock:
                    front.sends.append(request)
                    front.in_flight += 1
                    front.most_in_flight = max(front.most_in_flight, front.in_flight)
                    fault = front.refuse.get(recipient) or (
                        front.faults.pop(0) if front.faults else None
                    )
                try:
                    time.sleep(front.delay)
                    if fault:
                        self.answer_error(fault)
                        return
                    status = self.forward(body)
                finally:
                    with front.lock:
                        front.in_flight -= 1
                with front.lock:
                    if status == 200:
                        front.accepted[recipient] += 1
                        front.accepted_at.append(time.monotonic())
                    elif status == 429:
                        front.throttled += 1

            def answer_error(self, fault: Fault) -> None:
                payload = json.dumps({"message": fault.message}).encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/json")
                self.send_header(
                    "x-amzn-ErrorType",
                    f"{fault.code}:http://internal.amazon.com/coral/com.amazonaws.sesv2/",
                )
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def forward(self, body: bytes) -> int:
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                request = urllib.request.Request(
                    front.backend + self.path,
                    data=body or None,
                    headers=headers,
                    method=self.command,
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, answer_headers, payload = (
                            answer.status,
                            answer.headers,
                            answer.read(),
                        )
                except urllib.error.HTTPError as error:
                    status, answer_headers, payload = error.code, error.headers, error.read()
                    error.close()
                self.send_response(status)
                for name, value in answer_headers.items():
                    if name.lower() not in ("content-length", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return status

        return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-answer (a killed run) is expected here, not news."""


def prepare_moto(moto_url: str) -> None:
    """Our domain verified and a configuration set, in moto's (fresh) account."""
    client: Any = boto3.client("sesv2", endpoint_url=moto_url, region_name="us-east-1")
    client.create_email_identity(EmailIdentity=DOMAIN)
    client.create_configuration_set(ConfigurationSetName="lists-outbound")
    client.close()


@contextmanager
def running_front(moto_url: str, delay: float = 0.0) -> Iterator[Front]:
    """A Front on a loopback port for as long as the block runs."""
    f = Front(moto_url, delay=delay)
    server = QuietServer(("127.0.0.1", 0), f.handler())
    f.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sent_by_moto(moto_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(moto_url + "/moto-api/data.json", timeout=10) as answer:
        data = json.load(answer)
    return list(data["ses"]["RawMessage"])
