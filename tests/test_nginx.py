"""deploy/nginx.conf in front of the receiver: real nginx and gunicorn on loopback."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mailxfer.post import PostResult, post_message, receipt_of
from tests.conftest import SECRET, Project, Receiver, free_port, running_receiver
from tests.nginx import NGINX, SlowClient, running_nginx, self_signed

# CI installs nginx (`make system-deps`), so there a missing one is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    NGINX is None and not os.environ.get("CI"),
    reason="nginx is not installed: `make system-deps` installs it",
)
PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
SLOW_HEADERS = 8
SLOW_BODIES = 4
POSTS = 10


def message(n: int) -> bytes:
    return (
        f"From: ann@example.com\r\nTo: volunteers@lists.example.org\r\nSubject: Post {n}\r\n"
        f"Message-ID: <proxied-{n}@example.com>\r\n\r\nHello through nginx.\r\n"
    ).encode()


@pytest.fixture
def small_receiver(project: Project) -> Iterator[Receiver]:
    """The receiver under gunicorn with one worker of two threads: few slow clients fill it."""
    with running_receiver(project, workers=1, extra_env={"MAILRECV_THREADS": "2"}) as r:
        yield r


@pytest.fixture
def proxied(small_receiver: Receiver, tmp_path: Path) -> Iterator[str]:
    """deploy/nginx.conf served by nginx on loopback in front of small_receiver: its URL."""
    with running_nginx(tmp_path / "nginx", free_port(), small_receiver.port) as base:
        yield base + "/mailrecv"


def post(url: str, body: bytes, secret: str = SECRET) -> PostResult:
    return post_message(
        url, secret.encode(), io.BytesIO(body), ["volunteers@lists.example.org"], PASS
    )


def test_slow_clients_do_not_starve_legitimate_posts(
    proxied: str, small_receiver: Receiver
) -> None:
    """With eight clients sending their request heads a byte every 2 s and four more their
    bodies, every legitimate post through nginx is answered with a receipt: nginx holds the
    slow ones, gunicorn's two threads see only whole requests."""
    port = int(proxied.split(":")[2].split("/")[0])
    slow = [SlowClient(port, body=False) for _ in range(SLOW_HEADERS)]
    slow += [SlowClient(port, body=True) for _ in range(SLOW_BODIES)]
    for client in slow:
        client.start()
    try:
        while any(client.sent < 2 for client in slow):
            time.sleep(0.1)
        with ThreadPoolExecutor(POSTS) as pool:
            results = list(pool.map(lambda n: post(proxied, message(n)), range(POSTS)))
        answered_at = time.monotonic()
    finally:
        for client in slow:
            client.done.set()
    receipts = [receipt_of(result) for result in results]
    spool = small_receiver.project.spool
    assert sorted(spool.pending_ids()) == sorted(r.id for r in receipts)
    assert len(receipts) == POSTS
    # The slow clients were still connected, holding their connections, throughout.
    assert [c for c in slow if c.cut_at is not None and c.cut_at < answered_at] == []


def test_refusals_pass_through_the_proxy(proxied: str, small_receiver: Receiver) -> None:
    """Through nginx, a 16 MiB post signed with another secret is answered 401 (refused from
    its headers, not a proxy error), and the same post correctly signed is stored whole."""
    body = message(0) + b"y" * (16 * 1024 * 1024)
    refused = post(proxied, body, secret="not-the-secret")
    assert (refused.status, refused.body) == (401, '{"error":"bad signature"}\n')
    assert small_receiver.project.spool.ids() == []
    receipt = receipt_of(post(proxied, body))
    assert small_receiver.project.spool.read_message(receipt.id) == body


def test_mailxfer_posts_over_tls_through_the_shipped_config(
    small_receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/nginx.conf with its TLS as shipped (a certificate of the test's own): a
    signed post over https, the way the Lambda sends it, comes back as a receipt."""
    tls = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.cert))
    with running_nginx(tmp_path / "nginx", free_port(), small_receiver.port, tls) as base:
        assert base.startswith("https://")
        receipt = receipt_of(post(base + "/mailrecv", message(1)))
    assert small_receiver.project.spool.read_message(receipt.id) == message(1)
