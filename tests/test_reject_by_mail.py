"""Rejecting by mail, end to end: the receiver under gunicorn, `routemail run` as a process,
its mail caught by an SMTP server on loopback. The request offers reject+…@; the first line
of the moderator's mail is the reason the author is told; the rules are the approval's."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from routemail import sidecar
from tests.conftest import Project, Receiver, RunCli
from tests.smtp_relay import Recorder, relay_for
from tests.test_routing_trust import BOARD, dkim, message, post, run, sent, text_of


@pytest.fixture
def smtp(project: Project) -> Iterator[Recorder]:
    with relay_for(project) as relay:
        yield relay


def held_on_board(receiver: Receiver, smtp: Recorder, routemail_cli: RunCli) -> tuple[str, str]:
    """eve's post held on board; (its id, the reject address the request offers)."""
    msg_id = post(receiver, message("eve@outside.example", BOARD, "<h-9@outside.example>"), BOARD)
    run(routemail_cli)
    [(_, _, request)] = [s for s in sent(smtp) if s[1] == "chair@example.org"]
    found = re.search(r"To reject it, write to (reject\+\S+@lists\.example\.org)", text_of(request))
    assert found, text_of(request)
    assert str(request["Reply-To"]).startswith("approve+")
    smtp.messages.clear()
    return msg_id, found.group(1)


def mail_reason(
    receiver: Receiver, to: str, sender: str, text: str, extra: str = "", **verdicts: str
) -> str:
    raw = (
        f"From: {sender}\nTo: {to}\nSubject: Re: Moderation needed\n"
        f"Message-ID: <r-{abs(hash((to, sender, text)))}@example.org>\n{extra}\n{text}"
    ).encode()
    return post(receiver, raw, to, **verdicts)


def test_the_first_line_is_the_reason_the_author_is_told(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli
) -> None:
    project = receiver.project
    msg_id, address = held_on_board(receiver, smtp, routemail_cli)
    text = "Board matters go to the chair directly.\n\n> quoted request\n"
    reply = mail_reason(receiver, address, "Chair <chair@example.org>", text)
    run(routemail_cli)
    [line] = [e for e in project.spool.history(msg_id).events if e.code == sidecar.REJECTED]
    assert line.fields == (
        "board",
        "chair@example.org",
        "mail",
        *["Board", "matters", "go", "to", "the", "chair", "directly."],
    )
    assert project.spool.history(reply).discarded
    [(envelope, to, notice)] = sent(smtp, authors=True)
    # Queued as routemail's own mail: its bounces come back to be counted.
    assert (envelope, to) == ("outgoing-bounces@lists.example.org", "eve@outside.example")
    assert str(notice["Subject"]) == "Your message was rejected: Budget"
    assert "Board matters go to the chair directly." in text_of(notice)
    assert "quoted request" not in text_of(notice)
    # Mailing the same address again changes nothing, and the chair hears why.
    smtp.messages.clear()
    mail_reason(receiver, address, "Chair <chair@example.org>", "Once more\n")
    run(routemail_cli)
    [(_, to, refused)] = sent(smtp)
    assert to == "chair@example.org"
    assert str(refused["Subject"]).startswith("Rejection not accepted for board")
    assert "was rejected for board by chair@example.org (mail)" in re.sub(
        r"\s+", " ", text_of(refused)
    )


@pytest.mark.parametrize(
    ("sender", "extra", "verdicts", "reason"),
    [
        ("ann@example.com", "", {}, "ann@example.com is not a moderator of board"),
        (
            "chair@example.org",
            dkim("evil.example"),
            {"dmarc": "FAIL"},
            "DKIM passed for evil.example, not for example.org",
        ),
    ],
    ids=["not-a-moderator", "not-vouched-for"],
)
def test_a_refused_rejection_changes_nothing_and_says_why(
    receiver: Receiver,
    smtp: Recorder,
    routemail_cli: RunCli,
    sender: str,
    extra: str,
    verdicts: dict[str, str],
    reason: str,
) -> None:
    project = receiver.project
    msg_id, address = held_on_board(receiver, smtp, routemail_cli)
    before = project.spool.history(msg_id).events
    mail_reason(receiver, address, sender, "No.\n", extra, **verdicts)
    run(routemail_cli)
    assert project.spool.history(msg_id).events == before
    [(envelope, to, notice)] = sent(smtp)
    assert (envelope, to) == ("<>", "chair@example.org")
    assert str(notice["Subject"]).startswith("Rejection not accepted for board")
    assert reason in re.sub(r"\s+", " ", text_of(notice))


def test_an_approval_token_does_not_reject(
    receiver: Receiver, smtp: Recorder, routemail_cli: RunCli
) -> None:
    """reject+ with the approval's token (or the reverse) does not verify: nothing changes
    and nobody is told (the sender never saw a request naming that address)."""
    project = receiver.project
    msg_id, address = held_on_board(receiver, smtp, routemail_cli)
    token = address.split("-", 1)[1].split("@")[0]
    forged = address.replace(token, "a" * len(token))
    before = project.spool.history(msg_id).events
    reply = mail_reason(receiver, forged, "Chair <chair@example.org>", "No.\n")
    run(routemail_cli)
    assert project.spool.history(msg_id).events == before
    assert any(
        "token does not verify" in " ".join(e.fields) for e in project.spool.history(reply).events
    )
    assert sent(smtp) == []
