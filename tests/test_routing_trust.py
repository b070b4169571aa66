"""Nobody acts as someone else, and no mail loops, end to end: the receiver under
gunicorn, `routemail run` as a process, and its mail caught by an SMTP server on loopback."""

from __future__ import annotations

import email
import email.policy
import io
import json
import re
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from mailxfer.post import post_message
from routemail import config as configuration
from routemail import sidecar
from tests.conftest import SECRET, Project, Receiver, RunCli
from tests.smtp_relay import Recorder, relay_for

BOARD = "board@lists.example.org"
VOLUNTEERS = "volunteers@lists.example.org"
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
# The From of the issue: a moderator's address as the encoded display name of another.
DISGUISED = "=?us-ascii?q?chair=40example.org?= <mallory@evil.example>"


@pytest.fixture
def smtp(project: Project) -> Iterator[Recorder]:
    """An SMTP server on loopback that routemail delivers to (transport smtp)."""
    open_list = (
        '\n[lists.open]\nposters = "anyone"\nmembers = ["ann@example.com", "bob@example.net"]\n'
    )
    with relay_for(project, lists=open_list) as relay:
        yield relay


def message(sender: str, to: str, msgid: str, extra: str = "", subject: str = "Budget") -> bytes:
    head = f"From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: {msgid}\n{extra}"
    return (head + "\nPlease approve the budget.\n").encode()


def post(receiver: Receiver, raw: bytes, to: str, **verdicts: str) -> str:
    result = post_message(
        receiver.mailrecv_url, SECRET.encode(), io.BytesIO(raw), [to], PASSING | verdicts
    )
    assert result.status == 200, result.body
    return str(json.loads(result.body)["id"])


def run(routemail_cli: RunCli) -> None:
    done = routemail_cli("run")
    assert done.returncode == 0, done.stderr


def sent(smtp: Recorder, authors: bool = False) -> list[tuple[str, str, EmailMessage]]:
    """(envelope sender, recipient, parsed message) of everything the server accepted;
    the notices telling authors their post is held only when authors is true."""
    out = []
    for m in smtp.messages:
        msg = email.message_from_bytes(m.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        if authors or not str(msg["Subject"]).startswith("Your message was held"):
            out += [(m.sender, r, msg) for r in m.recipients]
    return out


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def log_text(project: Project) -> str:
    return "".join(p.read_text() for p in (project.data_dir / "maillist" / "log").iterdir())


def test_disguised_post_to_a_moderators_only_list_is_held(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli
) -> None:
    """A post whose encoded display name is a moderator's address is mallory's post:
    held on the moderators-only list, the request naming mallory; no member gets it."""
    project = receiver.project
    msg_id = post(receiver, message(DISGUISED, BOARD, "<d-1@evil.example>"), BOARD)
    run(routemail_cli)
    [(_, to, request)] = sent(smtp)
    assert to == "chair@example.org"
    assert str(request["Subject"]).startswith("Moderation needed for board")
    assert "sender mallory@evil.example may not post to board" in text_of(request)
    assert project.spool.history(msg_id).held_lists == {"board"}


def test_disguised_unsubscribe_removes_nobody(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli
) -> None:
    """Mail to LIST-unsubscribe@ unsubscribes the parsed From address, never the one in
    the display name."""
    project = receiver.project
    forged = "=?us-ascii?q?ann=40example.com?= <mallory@evil.example>"
    to = "board-unsubscribe@lists.example.org"
    msg_id = post(receiver, message(forged, to, "<u-1@evil.example>"), to)
    run(routemail_cli)
    assert "ann@example.com" in configuration.load(project.config_path).lists["board"].members
    assert project.spool.history(msg_id).discarded
    assert "mallory@evil.example is not a member of board" in log_text(project)
    assert sent(smtp) == []


@pytest.mark.parametrize(
    ("from_lines", "problem"),
    [
        ("", "no From header"),
        ("From: ann@example.com, chair@example.org\n", "2 addresses in the From header"),
        ("From: ann@example.com\nFrom: chair@example.org\n", "2 From headers"),
        ("From: undisclosed-recipients:;\n", "group syntax in the From header"),
        ("From: chair@example.org <mallory@evil.example>\n", "a From header that does not parse"),
    ],
    ids=["missing", "two-mailboxes", "two-fields", "group", "unparsable"],
)
def test_a_post_without_one_author_is_held_even_where_anyone_may_post(
    project: Project, smtp: Recorder, routemail_cli: RunCli, from_lines: str, problem: str
) -> None:
    """No From, several mailboxes or a From that does not parse: held for the moderators
    with that reason, on a list anyone may post to, rather than sent with a guess."""
    raw = (
        f"{from_lines}To: open@lists.example.org\nSubject: Hi\nMessage-ID: <p@x>\n\nHi\n"
    ).encode()
    msg_id = project.spool.receive(raw, ["open@lists.example.org"], PASSING).id
    run(routemail_cli)
    [(_, to, request)] = sent(smtp)
    assert to == "admin@example.org"  # open has no moderators
    assert f"the author is unknown: {problem}" in text_of(request)
    assert project.spool.history(msg_id).held_lists == {"open"}


def held_on_board(receiver: Receiver, smtp: Recorder, routemail_cli: RunCli) -> tuple[str, str]:
    """A non-moderator's post held on board; (its id, the approval address)."""
    msg_id = post(receiver, message("ann@example.com", BOARD, "<h-1@example.com>"), BOARD)
    run(routemail_cli)
    [(_, _, request)] = sent(smtp)
    smtp.messages.clear()
    return msg_id, str(request["Reply-To"])


def approve(receiver: Receiver, address: str, sender: str, extra: str = "", **verdicts: str) -> str:
    raw = message(sender, address, "<reply-1@example.org>", extra, subject="Re: ok")
    return post(receiver, raw, address, **verdicts)


def dkim(domain: str) -> str:
    return f"DKIM-Signature: v=1; a=rsa-sha256; d={domain}; s=sel; bh=x=; b=y=\n"


@pytest.mark.parametrize(
    ("sender", "extra", "verdicts", "reason", "told"),
    [
        (DISGUISED, "", {}, "mallory@evil.example is not a moderator", "chair@example.org"),
        (
            "chair@example.org",
            dkim("evil.example"),
            {"dmarc": "FAIL"},
            "DKIM passed for evil.example, not for example.org",
            "chair@example.org",
        ),
        (
            "chair@example.org",
            dkim("example.org") + dkim("evil.example"),
            {"dmarc": "FAIL"},
            "exactly one DKIM-Signature",
            "chair@example.org",
        ),
        (
            "chair@example.org, mallory@evil.example",
            "",
            {},
            "2 addresses in the From header",
            "chair@example.org",
        ),
    ],
    ids=["display-name", "dkim-other-domain", "two-signatures", "two-mailboxes"],
)
def test_a_refused_approval_changes_nothing_and_tells_the_moderator(
    receiver: Receiver,
    smtp: Recorder,
    routemail_cli: RunCli,
    sender: str,
    extra: str,
    verdicts: dict[str, str],
    reason: str,
    told: str,
) -> None:
    """An approval with a valid token counts only from one From mailbox that moderates
    the list, with DMARC PASS or an aligned DKIM PASS; refused, the message stays held
    and the moderator gets a notice (null envelope sender) saying why."""
    project = receiver.project
    msg_id, address = held_on_board(receiver, smtp, routemail_cli)
    before = project.spool.history(msg_id).events
    reply_id = approve(receiver, address, sender, extra, **verdicts)
    run(routemail_cli)
    assert project.spool.history(msg_id).events == before
    assert any(reason in " ".join(e.fields) for e in project.spool.history(reply_id).events)
    [(envelope, to, notice)] = sent(smtp)
    assert (envelope, to) == ("<>", told)  # MAIL FROM:<>
    assert str(notice["Subject"]).startswith("Approval not accepted for board")
    assert str(notice["Auto-Submitted"]) == "auto-generated"
    assert reason in re.sub(r"\s+", " ", text_of(notice))


def test_an_aligned_dkim_pass_approves_without_dmarc(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli
) -> None:
    """DMARC not passing (no policy published: GRAY) but DKIM passing for the moderator's
    own domain, on the only signature: the approval counts and the post goes out."""
    project = receiver.project
    msg_id, address = held_on_board(receiver, smtp, routemail_cli)
    approve(receiver, address, "Chair <chair@example.org>", dkim("example.org"), dmarc="GRAY")
    run(routemail_cli)
    assert project.spool.history(msg_id).approver("board") == "chair@example.org"
    assert project.spool.history(msg_id).has(sidecar.LIST_SENT, "board")
    assert sorted(to for _, to, _ in sent(smtp)) == ["ann@example.com", "chair@example.org"]


# -- no loops ----------------------------------------------------------------------------


def test_notices_go_out_with_a_null_envelope_sender(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli
) -> None:
    """Moderation requests and forwards to the admin are sent with MAIL FROM:<> and marked
    Auto-Submitted: auto-generated, so nothing answers them."""
    post(receiver, message("eve@outside.example", BOARD, "<n-1@outside.example>"), BOARD)
    stray = "nobody@lists.example.org"
    post(receiver, message("eve@outside.example", stray, "<n-2@outside.example>"), stray)
    run(routemail_cli)
    notices = sorted(sent(smtp), key=lambda s: s[1])
    assert [(envelope, to) for envelope, to, _ in notices] == [
        ("<>", "admin@example.org"),
        ("<>", "chair@example.org"),
    ]
    assert {str(m["Auto-Submitted"]) for _, _, m in notices} == {"auto-generated"}


def bounce_of(original: bytes, to: str) -> bytes:
    """A delivery status notification (RFC 3464) returning original, addressed to `to`."""
    return (
        b"Return-Path: <>\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.org>\n"
        + f"To: {to}\n".encode()
        + b"Subject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn-1@mx.example.org>\n"
        b"Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nThe mailbox is full.\n"
        b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        b"Final-Recipient: rfc822; admin@example.org\nAction: failed\nStatus: 5.2.2\n\n"
        b"--b\nContent-Type: message/rfc822\n\n" + original + b"\n--b--\n"
    )


@pytest.mark.parametrize(
    "to", ["routemail@lists.example.org", "board-owner@lists.example.org", "x@lists.example.org"]
)
def test_a_bounced_admin_forward_is_dropped_not_forwarded_again(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli, to: str
) -> None:
    """A DSN for a forward to the admin, addressed to one of the site's own addresses, is
    logged and dropped: the admin gets the first forward only, however often it runs."""
    project = receiver.project
    stray = "nobody@lists.example.org"
    post(receiver, message("eve@outside.example", stray, "<f-1@outside.example>"), stray)
    run(routemail_cli)
    [(_, _, forward)] = sent(smtp)
    dsn_id = post(receiver, bounce_of(forward.as_bytes(), to), to)
    for _ in range(2):
        run(routemail_cli)
        project.spool.set_pending(dsn_id, True)
    assert len(sent(smtp)) == 1
    history = project.spool.history(dsn_id)
    assert history.has(sidecar.SKIPPED, to)
    assert not history.has(sidecar.UNKNOWN, to)
    dropped = f"{dsn_id} {to}: a delivery status notification to an address that is no list"
    assert log_text(project).count(dropped) == 1


def test_an_auto_reply_to_an_own_address_is_dropped(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli
) -> None:
    """An out-of-office answer to a notice (Auto-Submitted: auto-replied) is not forwarded."""
    project = receiver.project
    to = "routemail@lists.example.org"
    raw = message("chair@example.org", to, "<ooo-1@example.org>", "Auto-Submitted: auto-replied\n")
    msg_id = post(receiver, raw, to)
    run(routemail_cli)
    assert sent(smtp) == []
    assert "an automatic message (Auto-Submitted: auto-replied) to an address" in log_text(project)
    assert project.spool.history(msg_id).has(sidecar.SKIPPED, to)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("Auto-Submitted: auto-replied\n", "an automatic message (Auto-Submitted: auto-replied)"),
        ("Auto-Submitted: auto-generated; owner-email=x@y\n", "(Auto-Submitted: auto-generated)"),
        ("Return-Path: <>\n", "a delivery status notification"),
    ],
    ids=["auto-replied", "auto-generated", "null-return-path"],
)
def test_an_automatic_list_post_is_held(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli, extra: str, reason: str
) -> None:
    """A member's out-of-office reply to a list copy (Auto-Submitted other than no, RFC
    3834) or a bounce sent to the list is held for the moderators, not sent to everyone."""
    project = receiver.project
    raw = message("Ann <ann@example.com>", VOLUNTEERS, "<auto-1@example.com>", extra)
    msg_id = post(receiver, raw, VOLUNTEERS)
    run(routemail_cli)
    [(envelope, to, request)] = sent(smtp)
    assert (envelope, to) == ("<>", "coordinator@example.org")
    assert f"{reason}" in text_of(request)
    assert project.spool.history(msg_id).held_lists == {"volunteers"}


def test_auto_submitted_no_is_a_post(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli
) -> None:
    """Auto-Submitted: no is what a person's mail says: it is delivered."""
    extra = "Auto-Submitted: no\n"
    post(receiver, message("ann@example.com", VOLUNTEERS, "<no-1@example.com>", extra), VOLUNTEERS)
    run(routemail_cli)
    assert len(sent(smtp)) == 3
