"""Authors with the addresses people really have, routed end to end by `routemail run`
through a real aiosmtpd relay: a quoted local part, RFC 6532 UTF-8, a single-label
domain. Their posts reach the list naming them in Reply-To, and when held they are
told at the address they wrote, over SMTPUTF8 when it is UTF-8."""

from __future__ import annotations

import email.parser
import email.policy

import pytest

from routemail import config as configuration
from routemail import sidecar
from routemail.transports.smtp_pool import SmtpPool
from tests.conftest import Project, RunCli
from tests.smtp_relay import Delivered, Recorder, relay_for
from tests.smtp_sink import Sink

PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
LISTS = """
[lists.open]
posters = "anyone"
members = ["ann@example.com", "bob@example.net"]

[lists.closed]
moderators = ["coordinator@example.org"]
members = ["ann@example.com"]
"""
SYSADMIN = '"System Administrator"@example.org'
OPEN, CLOSED = "open@lists.example.org", "closed@lists.example.org"


def post(project: Project, from_value: bytes, n: int = 1) -> str:
    raw = (
        b"From: " + from_value + b"\nTo: open@lists.example.org, closed@lists.example.org\n"
        b"Subject: Saturday\nMessage-ID: <author-" + str(n).encode() + b"@example.com>\n"
        b"Date: Thu, 3 Dec 2026 03:00:00 +0000\n\nWho can help?\n"
    )
    return project.spool.receive(raw, [OPEN, CLOSED], PASS).id


def to(relay: Recorder, recipient: str) -> list[Delivered]:
    return [m for m in relay.messages if m.recipients == [recipient]]


def header(message: Delivered, name: str) -> str:
    parsed = email.parser.BytesParser(policy=email.policy.SMTPUTF8).parsebytes(message.content)
    return " ".join(str(parsed[name]).split())


def run(routemail_cli: RunCli) -> None:
    result = routemail_cli("run")
    assert result.returncode in (0, 3), result.stderr


@pytest.mark.parametrize(
    ("from_value", "address", "shown"),
    [
        (b'"System Administrator"@example.org', SYSADMIN, "System Administrator"),
        (
            "J\u00f6rg <j\u00f6rg@ex\u00e4mple.de>".encode(),
            "j\u00f6rg@ex\u00e4mple.de",
            "J\u00f6rg",
        ),
        (b"guest@localhost", "guest@localhost", "guest"),
        (b'Ann <"a b"@example.org>', '"a b"@example.org', "Ann"),
    ],
    ids=["quoted", "utf8", "single-label", "quoted-with-name"],
)
def test_the_author_is_recognised_delivered_to_and_told(
    project: Project, routemail_cli: RunCli, from_value: bytes, address: str, shown: str
) -> None:
    """The open list's members get the post from "NAME via open" with Reply-To naming
    the author; the closed list holds it and the author is told, at the address as
    written (the relay offers SMTPUTF8)."""
    with relay_for(project, lists=LISTS, smtputf8=True) as relay:
        msg_id = post(project, from_value)
        run(routemail_cli)
        if not to(relay, address):
            run(routemail_cli)  # the notice was queued after the run looked
    (copy,) = to(relay, "bob@example.net")
    assert header(copy, "From") == f"{shown} via open <open@lists.example.org>"
    assert address in header(copy, "Reply-To")
    # A copy with a UTF-8 Reply-To is declared SMTPUTF8 (RFC 6531); others are not.
    assert ("SMTPUTF8" in copy.mail_options) is (not address.isascii())
    assert b"unknown sender" not in copy.content
    history = project.spool.history(msg_id)
    assert history.held_lists == {"closed"}
    assert history.has(sidecar.TOLD, "closed", "held")
    assert to(relay, address), ([m.recipients for m in relay.messages], _sidecars(project))
    (notice,) = to(relay, address)
    assert address in header(notice, "To")
    assert b"is waiting for a moderator" in notice.content


def test_without_smtputf8_a_utf8_author_is_a_clear_permanent_failure(
    project: Project, routemail_cli: RunCli
) -> None:
    """A relay that does not offer SMTPUTF8 cannot take mail to a UTF-8 local part: the
    notice is given up at once with the reason (a G line), never sent mangled. A UTF-8
    domain alone goes as its A-label, which needs no SMTPUTF8."""
    with relay_for(project, lists=LISTS, smtputf8=False) as relay:
        joerg = post(project, "J\u00f6rg <j\u00f6rg@ex\u00e4mple.de>".encode(), 1)
        ann = post(project, "Ann <ann@ex\u00e4mple.de>".encode(), 2)
        run(routemail_cli)
        run(routemail_cli)
    # Both posts reach the members, their UTF-8 Reply-To sent as 8-bit header text.
    assert len(to(relay, "bob@example.net")) == 2
    moderators = (["coordinator@example.org"], ["admin@example.org"])
    told = [m.recipients for m in relay.messages if m.recipients not in moderators]
    expected = [["ann@example.com"], ["bob@example.net"]] * 2 + [["ann@xn--exmple-cua.de"]]
    assert sorted(told) == sorted(expected)
    assert project.spool.history(ann).has(sidecar.TOLD, "closed", "held")
    assert project.spool.history(joerg).has(sidecar.TOLD, "closed", "held")
    gave_up = [line for line in _sidecars(project) if line.startswith("G ")]
    assert any(
        "j\u00f6rg@ex\u00e4mple.de" in line and "does not offer SMTPUTF8" in line
        for line in gave_up
    ), gave_up


def _sidecars(project: Project) -> list[str]:
    return [
        line
        for msg_id in project.spool.ids()
        for line in project.spool.read_sidecar(msg_id).splitlines()
    ]


@pytest.mark.parametrize(
    "from_value",
    [
        b'"chair@example.org"@evil.example',
        b"J\xf6rg <j\xf6rg@example.com>",
        b"<=?utf-8?q?chair?=@example.org>",
        b"ann@example.com, chair@example.org",
    ],
    ids=["at-in-quotes", "latin-1", "encoded-word", "two-mailboxes"],
)
def test_hostile_authors_stay_unknown(
    project: Project, routemail_cli: RunCli, from_value: bytes
) -> None:
    """None of these is an author: both lists hold the post (the moderator is asked)
    and nobody is told."""
    with relay_for(project, lists=LISTS, smtputf8=True) as relay:
        msg_id = post(project, from_value)
        run(routemail_cli)
    history = project.spool.history(msg_id)
    assert history.held_lists == {"open", "closed"}  # no author: held whoever may post
    assert not history.told("held")
    assert not to(relay, "bob@example.net")
    reached = {r for m in relay.messages for r in m.recipients}
    assert reached == {"coordinator@example.org", "admin@example.org"}  # the moderators


def test_a_utf8_reply_to_of_an_ascii_post_is_left_out_and_logged(
    project: Project, routemail_cli: RunCli
) -> None:
    """An ASCII post whose Reply-To is a UTF-8 address: the copy's Reply-To names the
    author instead, and the action log says why the other was left out."""
    raw = (
        "From: Ann <ann@example.com>\nReply-To: j\u00f6rg@ex\u00e4mple.de\n"
        "To: open@lists.example.org\nSubject: Saturday\nMessage-ID: <utf8-rt@example.com>\n"
        "Date: Thu, 3 Dec 2026 03:00:00 +0000\n\nWho can help?\n"
    ).encode()
    with relay_for(project, lists=LISTS, smtputf8=True) as relay:
        project.spool.receive(raw, [OPEN], PASS)
        run(routemail_cli)
    (copy,) = to(relay, "bob@example.net")
    assert header(copy, "Reply-To") == "Ann <ann@example.com>"
    log = "".join(p.read_text() for p in (project.data_dir / "maillist" / "log").iterdir())
    assert "open: copy: Reply-To: j\u00f6rg@ex\u00e4mple.de left out" in log


@pytest.mark.parametrize(
    ("from_value", "address"),
    [
        (b'"System Administrator"@example.org', SYSADMIN),
        ("J\u00f6rg <j\u00f6rg@ex\u00e4mple.de>".encode(), "j\u00f6rg@ex\u00e4mple.de"),
    ],
    ids=["quoted", "utf8"],
)
def test_a_rejection_reaches_the_author_as_written(
    project: Project, routemail_cli: RunCli, from_value: bytes, address: str
) -> None:
    """`routemail reject` tells the author of a held post, at the address they wrote."""
    with relay_for(project, lists=LISTS, smtputf8=True) as relay:
        msg_id = post(project, from_value)
        run(routemail_cli)
        rejected = routemail_cli("reject", "--reason", "Off topic", "--", msg_id, "closed")
        assert rejected.returncode == 0, rejected.stderr
        run(routemail_cli)
    assert project.spool.history(msg_id).has(sidecar.TOLD, "closed", "rejected")
    notices = [m for m in to(relay, address) if b"was rejected by a moderator" in m.content]
    assert len(notices) == 1
    assert b"Off topic" in notices[0].content


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_a_quoted_local_part_is_sent_as_an_rfc_5321_path(pipelining: bool) -> None:
    """RCPT TO:<"System Administrator"@example.org>, quotes, escapes and space as
    written, with and without PIPELINING; a UTF-8 address goes to this server, which
    offers SMTPUTF8, as written too."""
    notice = b"From: closed-owner@lists.example.org\r\nSubject: held\r\n\r\nWaiting.\r\n"
    with Sink(pipelining=pipelining) as sink:
        smtp = SmtpPool(
            configuration.Smtp(host="127.0.0.1", port=sink.port, tls="none", timeout=5), None
        )
        quoted = smtp.send("", SYSADMIN, notice, {})
        escaped = smtp.send("", '"a\\"b"@example.org', notice, {})
        utf8 = smtp.send("", "j\u00f6rg@ex\u00e4mple.de", notice, {})
        smtp.close()
    assert quoted.sent and escaped.sent and utf8.sent
    assert [m.recipients for m in sink.messages] == [
        [SYSADMIN],
        ['"a\\"b"@example.org'],
        ["j\u00f6rg@ex\u00e4mple.de"],
    ]
