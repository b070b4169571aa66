"""SIGKILL of the receiver while it writes a large message never leaves a partial queue entry."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import signal
import time

import pytest

from mailxfer.post import post_message
from mailxfer.signing import signed_headers
from routemail.identity import id_of_message
from routemail.spool import Spool
from tests.conftest import SECRET, Project, Receiver, start_receiver

PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
SIZE = 30 * 1024 * 1024
CHUNK = 64 * 1024


def big_message(tag: str) -> bytes:
    """A 30 MB message of 76-character base64 lines with its own Message-ID."""
    seed = hashlib.sha256(tag.encode()).digest()
    line = base64.b64encode(seed * 2)[:76] + b"\r\n"
    head = (
        f"From: ann@example.com\r\nTo: volunteers@lists.example.org\r\n"
        f"Subject: big attachment {tag}\r\nMessage-ID: <{tag}@example.com>\r\n\r\n"
    ).encode()
    return head + line * ((SIZE - len(head)) // len(line))


def entry_state(spool: Spool, msg_id: str, raw: bytes) -> str:
    """'absent', 'complete' (message + R/V sidecar) or 'orphan' (complete message, no sidecar).

    Anything else (a partial message under its final name, a sidecar without a
    message, a torn sidecar) fails the test.
    """
    message, car = spool.message_path(msg_id), spool.sidecar_path(msg_id)
    if not message.exists():
        assert not car.exists(), "sidecar without its message"
        return "absent"
    assert message.read_bytes() == raw, "partial message under its final name"
    if not car.exists():
        return "orphan"
    text = car.read_text()
    assert text.endswith("\n")
    assert [line.split()[0] for line in text.splitlines()] == ["I", "R", "V"]
    return "complete"


def send_until(receiver: Receiver, raw: bytes, stop_after: int, pause: float) -> None:
    """Send the headers and the first stop_after bytes of raw, slowly; then SIGKILL gunicorn.

    stop_after == len(raw) sends everything and kills pause seconds later,
    while the worker fsyncs, links and records the receipt.
    """
    headers = signed_headers(
        SECRET.encode(),
        int(time.time()),
        ["volunteers@lists.example.org"],
        PASS,
        hashlib.sha256(raw).hexdigest(),
    )
    port = int(receiver.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", "/mailrecv")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Type", "message/rfc822")
        conn.putheader("Content-Length", str(len(raw)))
        conn.endheaders()
        sent = 0
        while sent < stop_after:
            piece = raw[sent : min(sent + CHUNK, stop_after)]
            conn.send(piece)
            sent += len(piece)
            if sent % (1 << 20) < CHUNK:
                time.sleep(0.002)  # slow enough that the worker writes as bytes arrive
        time.sleep(pause)
        os.killpg(receiver.process.pid, signal.SIGKILL)
        receiver.process.wait(timeout=20)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("fraction", "pause"),
    [(0.05, 0.0), (0.5, 0.05), (0.99, 0.0), (1.0, 0.0), (1.0, 0.01), (1.0, 0.05), (1.0, 0.3)],
)
def test_kill_mid_write_leaves_all_or_nothing(
    project: Project, fraction: float, pause: float
) -> None:
    """After SIGKILL at any point, the final name holds the whole message or nothing,
    and the sender's retry then completes the entry."""
    tag = f"kill-{int(fraction * 100)}-{int(pause * 1000)}"
    raw = big_message(tag)
    msg_id = id_of_message(raw)
    receiver = start_receiver(project)
    send_until(receiver, raw, int(len(raw) * fraction), pause)
    spool = project.spool
    state = entry_state(spool, msg_id, raw)
    if fraction < 1.0:
        assert state == "absent"  # the body never fully arrived
    # Nothing else appeared in QUEUE/ under any name.
    assert {p.name for p in spool.queue.iterdir()} <= {msg_id, msg_id + ".data"}

    # The sender saw no 200, so it retries: the entry is then complete, whatever the kill left.
    again = start_receiver(project)
    try:
        result = post_message(
            again.mailrecv_url,
            SECRET.encode(),
            io.BytesIO(raw),
            ["volunteers@lists.example.org"],
            PASS,
        )
        assert result.status == 200, result.body
        answer = json.loads(result.body)
        assert answer["id"] == msg_id
        assert answer["duplicate"] is (state == "complete")
    finally:
        again.stop()
    assert spool.read_message(msg_id) == raw
    lines = spool.read_sidecar(msg_id).splitlines()
    codes = [line.split()[0] for line in lines]
    assert codes == (["I", "R", "V", "R", "V"] if state == "complete" else ["I", "R", "V"])
    assert spool.pending_ids() == [msg_id]
    # What the kill left in tmp/ is only temporary files, which clean_temp removes once stale.
    leftovers = list(spool.tmp.iterdir())
    assert all(p.stat().st_size <= len(raw) for p in leftovers)
    assert spool.clean_temp(now=time.time() + 2 * 86400) == len(leftovers)
    assert list(spool.tmp.iterdir()) == []
