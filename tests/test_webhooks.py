"""Webhooks: signed events, persisted, retried until the receiver takes them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project, RunCli
from tests.smtp_relay import relay_for
from tests.webhook_receiver import WEBHOOK_SECRET, HookReceiver, serve


@pytest.fixture
def hook_receiver() -> Iterator[HookReceiver]:
    """A webhook receiver on a free loopback port that answers 500 twice, then 200."""
    with serve(HookReceiver(failures=2)) as state:
        yield state


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
    events = ["received", "sent", "sent", "sent", "finished"]
    # The first two attempts were refused and wait; the rest went through.
    assert [p["event"] for p in pending["pending"]] == events[:2]
    assert [e["type"] for e in hook_receiver.accepted] == events[2:]
    time.sleep(0.3)
    second = env_cli("webhooks", "--deliver")
    assert second.returncode == 0, second.stderr
    time.sleep(0.5)
    third = env_cli("webhooks", "--deliver")
    assert third.returncode == 0, third.stderr
    assert hook_receiver.refused == 2
    assert hook_receiver.bad_signatures == 0
    assert [e["type"] for e in hook_receiver.accepted] == events[2:] + events[:2]
    assert len({e["id"] for e in hook_receiver.accepted}) == len(events)
    assert hook_receiver.accepted[2]["list"] == "volunteers"
    assert json.loads(env_cli("webhooks", "--json").stdout) == {"pending": [], "failed": []}


CREW = """
[lists.crew]
moderators = ["coordinator@example.org"]
members = ["ok@example.com", "busy@example.com", "nobody@example.com", "gone@example.com"]
"""


def _post(project: Project, name: str, sender: str, to: str) -> Path:
    path = project.root / f"{name}.eml"
    path.write_bytes(
        f"From: {sender}\nTo: {to}\nSubject: {name}\nMessage-ID: <{name}@example.com>\n\n"
        f"{name}\n".encode()
    )
    return path


def test_every_step_of_a_message_reaches_a_real_receiver(
    project: Project,
    routemail_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """received, held, rejected, approved, expired, forwarded, finished and, per recipient,
    sent, deferred, gave_up and suppressed are posted, signed, with the documented fields."""
    monkeypatch.setenv("ROUTEMAIL_WEBHOOK_SECRET", WEBHOOK_SECRET)
    hooks = HookReceiver(failures=0)
    quick = "retries = 1\nbackoff_seconds = 0.01\n"  # a 451 is not waited out for minutes
    with serve(hooks), relay_for(project, quick, lists=CREW) as relay:
        project.write_config(
            project.config_path.read_text() + f'\n[webhooks]\nurls = ["{hooks.url}"]\n'
        )
        cli = routemail_cli
        assert cli("suppression", "add", "gone@example.com").returncode == 0
        crew = "crew@lists.example.org"
        for name, sender, to in [
            ("post", "ok@example.com", crew),
            ("stray", "ok@example.com", "nosuchlist@lists.example.org"),
            ("outsider1", "eve@example.net", crew),
            ("outsider2", "eve@example.net", crew),
            ("outsider3", "eve@example.net", crew),
        ]:
            injected = cli("inject", str(_post(project, name, sender, to)), "--to", to)
            assert injected.returncode == 0, injected.stderr
        first = cli("run")
        assert first.returncode == 3, first.stderr  # 3: some mail undelivered (busy, nobody)
        ids = {e["subject"]: e["message"] for e in hooks.accepted if e["type"] == "received"}
        assert cli("reject", ids["outsider1"], "crew").returncode == 0
        approved = cli("approve", ids["outsider2"], "crew")
        assert approved.returncode == 0, approved.stderr
        sidecar = project.spool.sidecar_path(ids["outsider3"])
        os.utime(sidecar, (time.time() - 30 * 86400,) * 2)  # held a month: expires
        again = cli("run")
        assert again.returncode == 3, again.stderr
    assert hooks.bad_signatures == 0
    by_type: dict[str, list[dict[str, object]]] = {}
    for e in hooks.accepted:
        by_type.setdefault(str(e["type"]), []).append(e)
    post = ids["post"]
    copies = {
        (e["type"], e["address"])
        for e in hooks.accepted
        if e.get("message") == post and "address" in e
    }
    assert copies >= {
        ("sent", "ok@example.com"),
        ("deferred", "busy@example.com"),
        ("gave_up", "nobody@example.com"),
        ("suppressed", "gone@example.com"),
    }
    sent = next(e for e in by_type["sent"] if e["address"] == "ok@example.com")
    assert sent["list"] == "crew" and sent["detail"] == "2.0.0 Accepted"
    deferred = next(e for e in by_type["deferred"] if e["message"] == post)
    assert deferred["attempts"] == 1 and "451" in str(deferred["detail"])
    gave_up = next(e for e in by_type["gave_up"] if e["message"] == post)
    assert "550" in str(gave_up["detail"])
    forwarded = by_type["forwarded"][0]
    assert forwarded["message"] == ids["stray"]
    assert forwarded["destination"] == "nosuchlist@lists.example.org"
    assert forwarded["to"] == "admin@example.org" and forwarded["subject"] == "stray"
    assert {e["message"] for e in by_type["held"]} == {
        ids["outsider1"],
        ids["outsider2"],
        ids["outsider3"],
    }
    (rejected,) = by_type["rejected"]
    assert rejected["message"] == ids["outsider1"] and rejected["list"] == "crew"
    assert rejected["via"] == "shell" and str(rejected["by"]).startswith("shell:")
    assert rejected["sender"] == "eve@example.net" and rejected["subject"] == "outsider1"
    (approved_event,) = by_type["approved"]
    assert approved_event["message"] == ids["outsider2"] and approved_event["via"] == "shell"
    (expired,) = by_type["expired"]
    assert expired["message"] == ids["outsider3"] and expired["by"] is None
    assert expired["via"] == "expiry"
    assert any(
        e["message"] == ids["outsider2"] and e["address"] == "ok@example.com"
        for e in by_type["sent"]
    )
    assert len(relay.messages) >= 3
