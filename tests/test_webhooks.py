"""Webhooks: signed events, persisted, retried until the receiver takes them."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import Project, RunCli

WEBHOOK_SECRET = "webhook-secret-for-tests"


@dataclass
class HookReceiver:
    """An HTTP server on loopback that fails the first `failures` requests."""

    failures: int
    accepted: list[dict[str, object]] = field(default_factory=list)
    refused: int = 0
    bad_signatures: int = 0
    url: str = ""


@pytest.fixture
def hook_receiver() -> Iterator[HookReceiver]:
    """A webhook receiver on a free loopback port that answers 500 twice, then 200."""
    state = HookReceiver(failures=2)

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


def test_failing_receiver_gets_each_event_once_across_restart(
    project: Project,
    routemail_cli: RunCli,
    hook_receiver: HookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events that fail twice are kept on disk, and a later process delivers each exactly once."""
    monkeypatch.setenv("ROUTEMAIL_WEBHOOK_SECRET", WEBHOOK_SECRET)
    project.write_config(
        project.config_path.read_text()
        + f'\n[webhooks]\nurls = ["{hook_receiver.url}"]\nfirst_retry_seconds = 0.2\n'
    )
    message = project.root / "post.eml"
    message.write_bytes(
        b"From: ann@example.com\nTo: volunteers@lists.example.org\nSubject: Hook\n"
        b"Message-ID: <hook@example.com>\n\nhello\n"
    )
    env_cli = routemail_cli
    assert env_cli("inject", str(message), "--to", "volunteers@lists.example.org").returncode == 0
    first = env_cli("run")
    assert first.returncode == 0, first.stderr
    pending = json.loads(env_cli("webhooks", "--json").stdout)
    assert [p["event"] for p in pending["pending"]] == ["received", "delivered"]
    assert hook_receiver.accepted == []
    time.sleep(0.3)
    second = env_cli("webhooks", "--deliver")
    assert second.returncode == 0, second.stderr
    time.sleep(0.5)
    third = env_cli("webhooks", "--deliver")
    assert third.returncode == 0, third.stderr
    assert hook_receiver.refused == 2
    assert hook_receiver.bad_signatures == 0
    assert [e["type"] for e in hook_receiver.accepted] == ["received", "delivered"]
    assert len({e["id"] for e in hook_receiver.accepted}) == 2
    assert hook_receiver.accepted[1]["list"] == "volunteers"
    assert json.loads(env_cli("webhooks", "--json").stdout) == {"pending": [], "failed": []}
