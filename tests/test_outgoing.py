"""Transactional mail: `routemail send` and POST /api/v1/send go through the spool."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from routemail import sidecar
from tests.conftest import Project, Receiver, RunCli, running_receiver
from tests.mailbox import outbox

SEND_KEY = "send-key-for-tests-0123456789"


def reset_mail(sender: str = "no-reply@lists.example.org") -> bytes:
    return (
        f"From: Example Volunteers <{sender}>\nTo: ann@example.com\nCc: bob@example.net\n"
        f"Bcc: audit@example.org\nSubject: Password reset\n\nFollow this link.\n"
    ).encode()


def test_send_queues_and_delivers_with_a_trail(project: Project, routemail_cli: RunCli) -> None:
    """`routemail send -` delivers to To, Cc and Bcc as written, hides Bcc, adds a
    Message-ID, and leaves a sidecar trail ending in L outgoing."""
    done = routemail_cli("send", "-", input=reset_mail().decode())
    assert done.returncode == 0, done.stderr
    msg_id, rest = done.stdout.split(":", 1)
    assert rest.strip() == "queued for 3 recipients"
    copies = outbox(project.data_dir)
    assert sorted(c.recipient for c in copies) == [
        "ann@example.com",
        "audit@example.org",
        "bob@example.net",
    ]
    for c in copies:
        assert "Bcc" not in c.message
        assert c.message["Message-ID"]
        assert "List-Id" not in c.message
    codes = [e.code for e in project.spool.history(msg_id).events]
    assert codes[0] == sidecar.OUTGOING
    assert codes.count(sidecar.SENT) == 3
    assert codes[-1] == sidecar.LIST_SENT


def test_send_refuses_a_foreign_sender(project: Project, routemail_cli: RunCli) -> None:
    """A From off the site's domain is refused with the reason, and nothing is queued."""
    done = routemail_cli("send", "-", input=reset_mail("boss@gmail.com").decode())
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: From boss@gmail.com is not on lists.example.org: only the site's own domain "
        "may send (SES sends only from verified identities)"
    )
    assert project.spool.ids() == []


def test_send_skips_suppressed(project: Project, routemail_cli: RunCli) -> None:
    """A suppressed address gets no transactional mail either; the sidecar says why."""
    assert routemail_cli("suppression", "add", "bob@example.net").returncode == 0
    done = routemail_cli("send", "-", input=reset_mail().decode())
    msg_id = done.stdout.split(":", 1)[0]
    assert sorted(c.recipient for c in outbox(project.data_dir)) == [
        "ann@example.com",
        "audit@example.org",
    ]
    skipped = [e for e in project.spool.history(msg_id).events if e.code == sidecar.SKIPPED]
    assert [e.fields[0] for e in skipped] == ["bob@example.net"]


@pytest.fixture
def send_receiver(project: Project) -> Any:
    """The receiver under gunicorn with a send key and routemail started on receipt."""
    project.write_config(
        project.config_path.read_text().replace('on_receipt = "none"', 'on_receipt = "run"')
    )
    with running_receiver(project, extra_env={"ROUTEMAIL_SEND_KEY": SEND_KEY}) as receiver:
        yield receiver


def call_send(receiver: Receiver, payload: object, key: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        receiver.url + "/api/v1/send", data=json.dumps(payload).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def wait_for_outbox(data_dir: Path, count: int) -> list[Any]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        copies = outbox(data_dir)
        if len(copies) >= count:
            return copies
        time.sleep(0.1)
    raise AssertionError(f"expected {count} copies in the outbox")


def test_api_send(send_receiver: Receiver) -> None:
    """POST /api/v1/send with the key queues the message and routemail delivers it;
    a wrong or missing key, or a bad address, is refused and queues nothing."""
    payload = {"to": ["ann@example.com"], "subject": "Invitation", "text": "Sign up, please."}
    assert call_send(send_receiver, payload, "wrong")[0] == 401
    assert call_send(send_receiver, payload, None)[0] == 401
    bad = dict(payload, to=["a@b.c\r\nBcc: x@y"])
    status, answer = call_send(send_receiver, bad, SEND_KEY)
    assert status == 400 and answer["error"].startswith("to:")
    assert send_receiver.project.spool.ids() == []
    status, answer = call_send(send_receiver, payload, SEND_KEY)
    assert status == 202, answer
    assert answer["recipients"] == 1
    [copy] = wait_for_outbox(send_receiver.project.data_dir, 1)
    assert copy.recipient == "ann@example.com"
    assert copy.message["From"].addresses[0].addr_spec == "no-reply@lists.example.org"
    assert copy.message.get_content().strip() == "Sign up, please."
