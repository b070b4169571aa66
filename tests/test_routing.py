"""Routing end to end: the real receiver under gunicorn, then `routemail run`."""

from __future__ import annotations

import getpass
import io
import json
import os
import time
from pathlib import Path

import pytest

from mailxfer.post import post_message
from routemail import sidecar
from tests.conftest import SECRET, Project, Receiver, RunCli
from tests.mailbox import moderation_requests, outbox, recipients
from tests.webhook_receiver import WEBHOOK_SECRET, HookReceiver, serve

VOLUNTEERS = "volunteers@lists.example.org"
BOARD = "board@lists.example.org"
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


def message(
    sender: str = "Ann Author <ann@example.com>",
    to: str = VOLUNTEERS,
    subject: str = "Shift swap",
    msgid: str = "<post-1@example.com>",
    extra: str = "",
    body: str = "Can anyone take my Saturday shift?\n",
) -> bytes:
    head = f"From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: {msgid}\n{extra}"
    return (head + "\n" + body).encode()


def post(receiver: Receiver, raw: bytes, *to: str, **verdicts: str) -> str:
    result = post_message(
        receiver.mailrecv_url, SECRET.encode(), io.BytesIO(raw), list(to), PASSING | verdicts
    )
    assert result.status == 200, result.body
    return str(__import__("json").loads(result.body)["id"])


def run(routemail_cli: RunCli) -> None:
    done = routemail_cli("run")
    assert done.returncode == 0, done.stderr


def reply_to(request_copy: object) -> str:
    return str(request_copy.message["Reply-To"])  # type: ignore[attr-defined]


def events(project: Project, msg_id: str) -> list[str]:
    return [e.format().strip() for e in project.spool.history(msg_id).events]


def codes(project: Project, msg_id: str) -> list[str]:
    return [e.code for e in project.spool.history(msg_id).events]


def test_member_post_reaches_every_member_once(receiver: Receiver, routemail_cli: RunCli) -> None:
    """A member's post is delivered to each member exactly once and the entry is done."""
    project = receiver.project
    msg_id = post(receiver, message(), VOLUNTEERS)
    run(routemail_cli)
    assert recipients(project.data_dir) == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
    }
    history = project.spool.history(msg_id)
    assert history.sent_to == {"ann@example.com", "bob@example.net", "coordinator@example.org"}
    assert history.has(sidecar.LIST_SENT, "volunteers")
    assert not project.spool.is_pending(msg_id)
    assert (project.data_dir / "maillist" / "archive" / "volunteers" / msg_id).exists()
    log = next((project.data_dir / "maillist" / "log").iterdir()).read_text()
    assert f"{msg_id} volunteers: delivered to 3 recipients" in log


def test_run_again_sends_nothing_more(receiver: Receiver, routemail_cli: RunCli) -> None:
    """Receiving the same message again after delivery sends no second copy."""
    project = receiver.project
    post(receiver, message(), VOLUNTEERS)
    run(routemail_cli)
    post(receiver, message(), VOLUNTEERS)
    run(routemail_cli)
    assert set(recipients(project.data_dir).values()) == {1}


def test_non_member_held_then_approved_by_reply(
    receiver: Receiver, routemail_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-member's post is held; the moderator's reply approves and delivers it, and
    the webhooks say held, then approved by the moderator via mail."""
    project = receiver.project
    monkeypatch.setenv("ROUTEMAIL_WEBHOOK_SECRET", WEBHOOK_SECRET)
    hooks = HookReceiver(failures=0)
    with serve(hooks):
        project.write_config(
            project.config_path.read_text()
            + f'\n[webhooks]\nurls = ["{hooks.url}"]\nevents = ["held", "approved"]\n'
        )
        _held_then_approved_by_reply(receiver, routemail_cli)
    held, approved = hooks.accepted
    assert (held["type"], held["list"], held["sender"]) == (
        "held",
        "volunteers",
        "eve@outside.example",
    )
    assert approved["type"] == "approved" and approved["message"] == held["message"]
    assert (approved["by"], approved["via"]) == ("coordinator@example.org", "mail")
    assert approved["subject"] == held["subject"] == "Shift swap"


def _held_then_approved_by_reply(receiver: Receiver, routemail_cli: RunCli) -> None:
    project = receiver.project
    msg_id = post(receiver, message(sender="Eve <eve@outside.example>"), VOLUNTEERS)
    run(routemail_cli)
    requests = moderation_requests(project.data_dir)
    assert [r.recipient for r in requests] == ["coordinator@example.org"]
    request = requests[0].message
    text = request.get_body(("plain",))
    assert text is not None
    assert "sender eve@outside.example is not a member of volunteers" in text.get_content()
    attached = [p for p in request.iter_attachments() if p.get_content_type() == "message/rfc822"]
    assert len(attached) == 1
    assert codes(project, msg_id)[-2:] == [sidecar.MODERATION, sidecar.TOLD]
    assert recipients(project.data_dir, "Shift swap") == {}
    [told] = [m for m in outbox(project.data_dir) if m.recipient == "eve@outside.example"]
    assert str(told.message["Subject"]) == "Your message was held: Shift swap"
    assert str(told.message["Auto-Submitted"]) == "auto-replied"

    approval = message(
        sender="Coordinator <coordinator@example.org>",
        to=reply_to(requests[0]),
        subject="Re: " + str(request["Subject"]),
        msgid="<approval-1@example.org>",
    )
    approval_id = post(receiver, approval, reply_to(requests[0]))
    run(routemail_cli)
    assert project.spool.history(msg_id).approver("volunteers") == "coordinator@example.org"
    assert recipients(project.data_dir, "Shift swap") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
    }
    assert project.spool.history(approval_id).discarded
    assert not project.spool.is_pending(approval_id)


@pytest.mark.parametrize(
    ("sender", "verdicts", "tamper", "extra", "reason"),
    [
        ("coordinator@example.org", {}, True, "", "the token does not verify"),
        ("ann@example.com", {}, False, "", "is not a moderator of volunteers"),
        ("coordinator@example.org", {"dkim": "FAIL", "dmarc": "FAIL"}, False, "", "neither DMARC"),
        ("coordinator@example.org", {}, False, "Auto-Submitted: auto-replied\n", "automatic"),
    ],
    ids=["bad-token", "wrong-sender", "failing-dkim-dmarc", "auto-reply"],
)
def test_forged_approval_changes_nothing(
    receiver: Receiver,
    routemail_cli: RunCli,
    sender: str,
    verdicts: dict[str, str],
    tamper: bool,
    extra: str,
    reason: str,
) -> None:
    """An approval with a bad token, from a non-moderator, failing DKIM and DMARC, or sent
    by an auto-responder is logged, discarded, and leaves the message held."""
    project = receiver.project
    msg_id = post(receiver, message(sender="eve@outside.example"), VOLUNTEERS)
    run(routemail_cli)
    address = reply_to(moderation_requests(project.data_dir)[0])
    if tamper:
        local, domain = address.split("@")
        address = f"{local[:-4]}aaaa@{domain}"
    before = events(project, msg_id)
    forged = message(sender=sender, to=address, subject="Re: ok", msgid="<forged@x>", extra=extra)
    forged_id = post(receiver, forged, address, **verdicts)
    run(routemail_cli)
    assert events(project, msg_id) == before
    assert recipients(project.data_dir, "Shift swap") == {}
    assert any(reason in e for e in events(project, forged_id))
    log = next((project.data_dir / "maillist" / "log").iterdir()).read_text()
    assert f"{forged_id} invalid approval for {msg_id}" in log


def test_two_lists_sharing_members_send_one_copy_each(
    receiver: Receiver, routemail_cli: RunCli
) -> None:
    """A moderator's post to two lists reaches an address on both lists once."""
    project = receiver.project
    raw = message(sender="chair@example.org", to=f"{VOLUNTEERS}, {BOARD}")
    project.write_config(
        project.config_path.read_text().replace(
            'members = ["ann@example.com", "bob@example.net", "coordinator@example.org"]',
            'members = ["ann@example.com", "bob@example.net", "chair@example.org"]',
        )
    )
    msg_id = post(receiver, raw, VOLUNTEERS)
    post(receiver, raw, BOARD)
    run(routemail_cli)
    assert recipients(project.data_dir) == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "chair@example.org": 1,
    }
    history = project.spool.history(msg_id)
    assert history.lists_with(sidecar.LIST_SENT) == {"volunteers", "board"}


@pytest.mark.parametrize("verdict", ["dkim", "dmarc", "spf", "spam", "virus"])
def test_each_failing_verdict_holds(
    receiver: Receiver, routemail_cli: RunCli, verdict: str
) -> None:
    """A member's post with any failing SES verdict is held and the request names it."""
    project = receiver.project
    msg_id = post(receiver, message(), VOLUNTEERS, **{verdict: "FAIL"})
    run(routemail_cli)
    assert recipients(project.data_dir, "Shift swap") == {}
    assert project.spool.history(msg_id).has(sidecar.MODERATION, "volunteers")
    request = moderation_requests(project.data_dir)[0].message
    body = request.get_body(("plain",))
    assert body is not None
    assert f"{verdict.upper()} verdict is FAIL" in body.get_content()
    kinds = [p.get_content_type() for p in request.iter_attachments()]
    if verdict == "virus":
        assert kinds == ["text/rfc822-headers"]
        assert b"Saturday shift" not in moderation_requests(project.data_dir)[0].path.read_bytes()
    else:
        assert kinds == ["message/rfc822"]


def test_gray_passes_where_configured(receiver: Receiver, routemail_cli: RunCli) -> None:
    """With [moderation.pass] allowing GRAY for SPF, a GRAY SPF verdict is delivered."""
    project = receiver.project
    project.write_config(
        project.config_path.read_text() + '\n[moderation.pass]\nspf = ["PASS", "GRAY"]\n'
    )
    post(receiver, message(), VOLUNTEERS, spf="GRAY")
    run(routemail_cli)
    assert len(recipients(project.data_dir, "Shift swap")) == 3


def test_unknown_destination_reaches_admin_once(receiver: Receiver, routemail_cli: RunCli) -> None:
    """Mail to an address that is no list is forwarded to the admin once, however often run."""
    project = receiver.project
    msg_id = post(receiver, message(to="nobody@lists.example.org"), "nobody@lists.example.org")
    for _ in range(3):
        run(routemail_cli)
        project.spool.set_pending(msg_id, True)
    copies = outbox(project.data_dir)
    assert [c.recipient for c in copies] == ["admin@example.org"]
    forward = copies[0].message
    assert "nobody@lists.example.org" in str(forward["Subject"])
    body = forward.get_body(("plain",))
    assert body is not None
    assert "ann@example.com" in body.get_content()
    assert codes(project, msg_id).count(sidecar.UNKNOWN) == 1


def test_own_list_mail_is_dropped(receiver: Receiver, routemail_cli: RunCli) -> None:
    """Mail carrying this router's own List-Id is dropped with a sidecar and log line."""
    project = receiver.project
    looped = message(extra="List-Id: Volunteers <volunteers.lists.example.org>\n")
    msg_id = post(receiver, looped, VOLUNTEERS)
    run(routemail_cli)
    assert outbox(project.data_dir) == []
    assert project.spool.history(msg_id).discarded
    log = next((project.data_dir / "maillist" / "log").iterdir()).read_text()
    assert "dropped: a loop" in log


def test_delivered_copy_is_rerouted_as_loop(receiver: Receiver, routemail_cli: RunCli) -> None:
    """A copy routemail itself sent, fed back in, is recognised as a loop."""
    project = receiver.project
    post(receiver, message(), VOLUNTEERS)
    run(routemail_cli)
    copy = outbox(project.data_dir)[0].path.read_bytes()
    copy = copy.split(b"\n", 2)[2]  # drop Return-Path and Delivered-To
    copy = copy.replace(b"<post-1@example.com>", b"<post-1-again@example.com>")
    msg_id = post(receiver, copy, VOLUNTEERS)
    run(routemail_cli)
    assert project.spool.history(msg_id).discarded
    assert len(outbox(project.data_dir)) == 3


def test_shell_approve_and_reject(project: Project, routemail_cli: RunCli, tmp_path: Path) -> None:
    """`routemail approve` delivers a held message; `routemail reject` ends a hold for good."""
    first = tmp_path / "first.eml"
    first.write_bytes(message(sender="eve@outside.example", msgid="<first@x>"))
    second = tmp_path / "second.eml"
    second.write_bytes(message(sender="eve@outside.example", msgid="<second@x>", subject="Other"))
    ids = []
    for path in (first, second):
        done = routemail_cli("inject", str(path), "--to", VOLUNTEERS)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    run(routemail_cli)
    approved = routemail_cli("approve", ids[0], "volunteers")
    assert approved.returncode == 0, approved.stderr
    assert f"approved for volunteers by shell:{getpass.getuser()}" in approved.stdout
    rejected = routemail_cli("reject", ids[1], "volunteers")
    assert rejected.returncode == 0, rejected.stderr
    run(routemail_cli)
    assert len(recipients(project.data_dir, "Shift swap")) == 3
    assert recipients(project.data_dir, "Other") == {}
    again = routemail_cli("approve", ids[1], "volunteers")
    assert again.returncode == 1
    assert again.stderr.startswith(
        f"Error: {ids[1]} was rejected for volunteers by shell:{getpass.getuser()} (shell) at "
    )


def test_resolver_failure_waits_and_never_sends_partially(
    project: Project, routemail_cli: RunCli, tmp_path: Path
) -> None:
    """A dynamic list whose resolver fails leaves the message queued; once the resolver
    works, the next run delivers to the whole list."""
    script = tmp_path / "lookup"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    project.write_config(
        project.config_path.read_text()
        + f'\n[[dynamic]]\npattern = "team-(?P<n>[0-9]+)"\nresolver = "command"\n'
        f'command = ["{script}", "{{n}}"]\n'
    )
    path = tmp_path / "m.eml"
    path.write_bytes(message(to="team-7@lists.example.org"))
    msg_id = routemail_cli("inject", str(path), "--to", "team-7@lists.example.org").stdout.strip()
    waiting = routemail_cli("run")
    assert waiting.returncode == 3, waiting.stderr  # the message waits: worth a line
    assert f"undelivered: {msg_id}: team-7: cannot resolve:" in waiting.stderr
    assert outbox(project.data_dir) == []
    assert project.spool.is_pending(msg_id)
    assert codes(project, msg_id)[-1] == sidecar.DEFERRED
    script.write_text(
        "#!/bin/sh\necho one@example.com\necho two@example.com\necho bcc: lead@example.org\n"
    )
    run(routemail_cli)
    assert recipients(project.data_dir) == {
        "one@example.com": 1,
        "two@example.com": 1,
        "lead@example.org": 1,
    }
    assert not project.spool.is_pending(msg_id)


def test_old_holds_expire_and_old_entries_are_removed(
    project: Project, routemail_cli: RunCli, tmp_path: Path
) -> None:
    """A hold older than hold_days gets an E line; finished entries past retention_days go."""
    held_file, done_file = tmp_path / "held.eml", tmp_path / "done.eml"
    held_file.write_bytes(message(sender="eve@outside.example", msgid="<held@x>"))
    done_file.write_bytes(message(msgid="<done@x>"))
    held_id = routemail_cli("inject", str(held_file), "--to", VOLUNTEERS).stdout.strip()
    done_id = routemail_cli("inject", str(done_file), "--to", VOLUNTEERS).stdout.strip()
    run(routemail_cli)
    spool = project.spool
    old = time.time() - 15 * 86400
    os.utime(spool.sidecar_path(held_id), (old, old))
    run(routemail_cli)
    assert codes(project, held_id)[-2:] == [sidecar.EXPIRED, sidecar.TOLD]
    told = [m.message for m in outbox(project.data_dir) if m.recipient == "eve@outside.example"]
    assert [str(m["Subject"]) for m in told] == [
        "Your message was held: Shift swap",
        "Your message was expired: Shift swap",
    ]
    assert spool.sidecar_path(done_id).exists()
    ancient = time.time() - 31 * 86400
    for msg_id in spool.ids():  # the two, and the notices to eve
        os.utime(spool.sidecar_path(msg_id), (ancient, ancient))
    run(routemail_cli)
    assert spool.ids() == []
    assert not spool.message_path(done_id).exists()


def test_message_without_headers_is_held_for_the_admin(
    project: Project, routemail_cli: RunCli, tmp_path: Path
) -> None:
    """A message with no header fields is held (it has no author), and the admin is told
    why: no crash, no silent drop, no copies, even once approved."""
    project.write_config(
        project.config_path.read_text()
        + '\n[lists.open]\nposters = "anyone"\nmembers = ["ann@example.com"]\n'
    )
    # inject and the receiver refuse such input now; an entry queued before still routes.
    junk = b"this is not a mail message at all\n"
    msg_id = project.spool.receive(junk, ["open@lists.example.org"], {}).id
    run(routemail_cli)
    assert recipients(project.data_dir) == {}
    [notice] = moderation_requests(project.data_dir)
    assert notice.recipient == "admin@example.org"
    body = notice.message.get_body(("plain",))
    assert body is not None
    assert "the author is unknown: no From header" in body.get_content()
    state = routemail_cli("queue", "--state", "held", "--json")
    assert [e["id"] for e in json.loads(state.stdout)] == [msg_id]
    assert routemail_cli("approve", msg_id, "open").returncode == 0
    assert project.spool.history(msg_id).discarded
    assert recipients(project.data_dir) == {}
