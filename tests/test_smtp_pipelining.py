"""PIPELINING (RFC 2920) against a real server over a socket: MAIL, RCPT and DATA in one
write when the server offers it, every refusal mapped as without it, RSET after a
failed transaction, and each copy delivered byte for byte."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from routemail import config as configuration
from routemail.copy import CopyMaker
from routemail.transports import PERMANENT, SENT, TEMPORARY, Envelope, Result
from routemail.transports.smtp import SmtpTransport
from routemail.transports.wire import CRLF, WRITE_BYTES, smtp_data, unstuffed
from tests.conftest import BASE_CONFIG, Project, RunCli
from tests.copy_support import NOW, identity
from tests.smtp_sink import Sink

SENDER = "volunteers-bounces@lists.example.org"
TAGS = {"list": "volunteers", "message": "abc"}
INPUTS = Path(__file__).parent / "data" / "copy" / "in"
PIPELINED = ["MAIL", "RCPT", "DATA"]


def transport(sink: Sink) -> SmtpTransport:
    return SmtpTransport(
        configuration.Smtp(host="127.0.0.1", port=sink.port, tls="none", timeout=5)
    )


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A pipelining sink that answers MAIL and RCPT only once DATA has arrived."""
    with Sink(hold_replies=True) as server:
        yield server


def copy(recipient: str, body: str = "See you there.\n.leading dot\n") -> bytes:
    return (
        f"From: Ann via volunteers <volunteers@lists.example.org>\nTo: {recipient}\n"
        f"Subject: [volunteers] Saturday\nMessage-ID: <m1@example.com>\n\n{body}"
    ).encode()


def transactions(sink: Sink) -> list[list[str]]:
    """The commands of each read, EHLO and QUIT left out."""
    return [r for r in sink.reads if r not in (["EHLO"], ["QUIT"])]


@pytest.mark.parametrize(
    "name", ["03-alternative-qp.eml", "05-mixed-attachment.eml", "06-latin1-8bit.eml"]
)
def test_pipelined_copies_arrive_byte_for_byte(sink: Sink, name: str) -> None:
    """Real copies go out with MAIL, RCPT and DATA in one write, and the server stores
    exactly each copy in wire form: the sink withholds its MAIL and RCPT replies until
    DATA arrives, so a client waiting for them would time out instead."""
    maker = CopyMaker((INPUTS / name).read_bytes(), identity(footer=".{recipient}\n."), now=NOW)
    recipients = [f"member{i}@example.net" for i in range(3)]
    copies = {r: maker.copy_for(r) for r in recipients}
    smtp = transport(sink)
    try:
        results = [smtp.send(SENDER, r, copies[r], TAGS) for r in recipients]
    finally:
        smtp.close()
    assert [r.outcome for r in results] == [SENT] * 3, results
    assert transactions(sink) == [PIPELINED] * 3
    assert sink.counts.connections == 1
    for message, recipient in zip(sink.messages, recipients, strict=True):
        assert message.recipients == [recipient]
        assert message.sender == SENDER
        assert message.content + b".\r\n" == unstuffed(smtp_data(copies[recipient]))
        expected = bytes(copies[recipient]).replace(CRLF, b"\n").replace(b"\n", CRLF)
        assert message.content == expected


@pytest.mark.parametrize("eol", [b"\n", CRLF])
def test_a_big_copy_arrives_byte_for_byte(sink: Sink, eol: bytes) -> None:
    """A copy with an attachment of several write-sized pieces goes out piece by
    piece (the attachment from the message itself) and arrives whole, with SIZE
    declared for what was written."""
    attachment = base64.encodebytes(bytes(range(256)) * 2500).replace(b"\n", eol)
    raw = (
        b"From: Ann <ann@example.com>\nTo: volunteers@lists.example.org\nSubject: Big\n"
        b"Message-ID: <big@example.com>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\n'
        b"Content-Type: text/plain\n\n.Hello\n--b1\nContent-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n\n" + attachment + b"--b1--\n"
    ).replace(b"\n", eol)
    maker = CopyMaker(raw, identity(footer="{recipient}"), now=NOW)
    big = maker.copy_for("member@example.net")
    assert len(big) > 2 * WRITE_BYTES
    smtp = transport(sink)
    try:
        assert smtp.send(SENDER, "member@example.net", big, TAGS).outcome == SENT
    finally:
        smtp.close()
    (message,) = sink.messages
    assert message.content == bytes(big).replace(CRLF, b"\n").replace(b"\n", CRLF)


def test_refused_recipients_are_mapped_and_reset(sink: Sink) -> None:
    """A 550 at RCPT is permanent, a 451 temporary for that copy alone; each failed
    transaction is reset and the next copy goes out on the same connection."""
    smtp = transport(sink)
    people = ["ann@x.org", "nobody@x.org", "busy@x.org", "bob@x.org"]
    results = [smtp.send(SENDER, r, copy(r), TAGS) for r in people]
    smtp.close()
    assert [r.outcome for r in results] == [SENT, PERMANENT, TEMPORARY, SENT]
    assert results[1].detail == "smtp: RCPT TO refused: 550 5.1.1 no such user here"
    assert results[2].detail.startswith("smtp: RCPT TO refused: 451 4.2.1")
    assert not results[2].halt and not results[2].throttled
    assert [m.recipients for m in sink.messages] == [["ann@x.org"], ["bob@x.org"]]
    assert transactions(sink) == [PIPELINED, PIPELINED, ["RSET"], PIPELINED, ["RSET"], PIPELINED]
    assert sink.counts.connections == 1


def test_refused_data_and_refused_content(sink: Sink) -> None:
    """A 554 to DATA and a 550 after the content are permanent refusals of that copy,
    named by where they came; nothing is stored and the next copy goes through."""
    smtp = transport(sink)
    people = ["nodata@x.org", "spam@x.org", "cy@x.org"]
    results = [smtp.send(SENDER, r, copy(r), TAGS) for r in people]
    smtp.close()
    assert [r.outcome for r in results] == [PERMANENT, PERMANENT, SENT]
    assert results[0].detail == "smtp: DATA refused: 554 5.7.1 DATA refused for this recipient"
    assert results[1].detail == "smtp: end of data refused: 550 5.7.1 content refused"
    assert [m.recipients for m in sink.messages] == [["cy@x.org"]]
    # After DATA's refusal, not after the content's: the end of data ends a transaction.
    assert sink.commands.count("RSET") == 1
    assert sink.counts.connections == 1


def test_refused_sender_and_login_trouble() -> None:
    """A 553 at MAIL is permanent; a 530 concerns our login: temporary, and the relay
    is left alone for a while (halt), whatever the rest of the pipeline said."""
    with Sink(hold_replies=True) as sink:
        smtp = transport(sink)
        refused = smtp.send("refused@lists.example.org", "ann@x.org", copy("ann@x.org"), TAGS)
        login = smtp.send("login@lists.example.org", "ann@x.org", copy("ann@x.org"), TAGS)
        sent = smtp.send(SENDER, "ann@x.org", copy("ann@x.org"), TAGS)
        smtp.close()
    assert (refused.outcome, refused.halt) == (PERMANENT, False)
    assert refused.detail == "smtp: MAIL FROM refused: 553 5.7.1 sender refused"
    assert (login.outcome, login.halt) == (TEMPORARY, True)
    assert "530 5.7.0" in login.detail and "credentials" in login.detail
    assert sent.sent
    assert len(sink.messages) == 1


def test_service_closing_mid_pipeline_halts_and_reconnects(sink: Sink) -> None:
    """A 421 at RCPT, the server hanging up before answering DATA: the 421 is the
    outcome (temporary, halt), and the next copy goes out on a new connection."""
    smtp = transport(sink)
    closing = smtp.send(SENDER, "closing@x.org", copy("closing@x.org"), TAGS)
    after = smtp.send(SENDER, "dee@x.org", copy("dee@x.org"), TAGS)
    smtp.close()
    assert (closing.outcome, closing.halt) == (TEMPORARY, True)
    assert closing.detail == "smtp: RCPT TO refused: 421 4.3.2 shutting down"
    assert after.sent
    assert sink.counts.connections == 2
    assert [m.recipients for m in sink.messages] == [["dee@x.org"]]


def test_content_wanted_after_a_failed_pipeline_is_ended_empty() -> None:
    """A server that answers 354 though it refused every recipient gets a lone ".",
    so no copy goes to anybody, and the next transaction is clean."""
    with Sink(hold_replies=True, lax_data=True) as sink:
        smtp = transport(sink)
        refused = smtp.send(SENDER, "nobody@x.org", copy("nobody@x.org"), TAGS)
        sent = smtp.send(SENDER, "eve@x.org", copy("eve@x.org"), TAGS)
        smtp.close()
    assert refused.outcome == PERMANENT and "550 5.1.1" in refused.detail
    assert sent.sent
    assert [m.recipients for m in sink.messages] == [["eve@x.org"]]
    assert sink.counts.refused == 1  # the empty content, refused


def test_idle_connection_closed_by_the_server_is_reopened() -> None:
    """A server that hung up after the last copy: the next pipeline meets a closed
    connection before MAIL is answered, and goes out on a new one as a success."""
    with Sink(close_after_each=True) as sink:
        smtp = transport(sink)
        results = [smtp.send(SENDER, r, copy(r), TAGS) for r in ("a@x.org", "b@x.org")]
        smtp.close()
    assert [r.outcome for r in results] == [SENT, SENT]
    assert sink.counts.connections == 2
    assert [m.recipients for m in sink.messages] == [["a@x.org"], ["b@x.org"]]


def chain(smtp: SmtpTransport, people: list[str]) -> list[Result]:
    """Each copy sent naming the next as the one that follows (as a sender does when
    another copy is queued)."""
    copies = [copy(r) for r in people]
    following = [Envelope(SENDER, r, c) for r, c in zip(people[1:], copies[1:], strict=True)]
    return [
        smtp.send(SENDER, r, c, TAGS, f)
        for r, c, f in zip(people, copies, [*following, None], strict=True)
    ]


def test_the_following_copy_is_announced_with_the_content_before_it(sink: Sink) -> None:
    """Each copy's MAIL, RCPT and DATA go out in the write that ends the copy before
    it: one round trip a copy. Every copy arrives whole, to its own recipient."""
    smtp = transport(sink)
    people = [f"member{i}@example.net" for i in range(4)]
    results = chain(smtp, people)
    smtp.close()
    assert [r.outcome for r in results] == [SENT] * 4
    assert sink.announced == 3
    assert transactions(sink) == [PIPELINED] * 4
    assert sink.counts.connections == 1
    for message, recipient in zip(sink.messages, people, strict=True):
        assert message.recipients == [recipient]
        assert message.content == copy(recipient).replace(b"\n", CRLF)


def test_refusals_around_an_announced_copy(sink: Sink) -> None:
    """Content refused: the copy announced after it still goes (the end of data ends a
    transaction; no RSET). An announced copy refused at RCPT is refused as any other,
    its transaction reset, and the next copy goes out on the same connection."""
    smtp = transport(sink)
    results = chain(smtp, ["spam@x.org", "cy@x.org", "nobody@x.org", "dee@x.org"])
    smtp.close()
    assert [r.outcome for r in results] == [PERMANENT, SENT, PERMANENT, SENT]
    assert results[0].detail == "smtp: end of data refused: 550 5.7.1 content refused"
    assert results[2].detail == "smtp: RCPT TO refused: 550 5.1.1 no such user here"
    assert [m.recipients for m in sink.messages] == [["cy@x.org"], ["dee@x.org"]]
    assert sink.commands.count("RSET") == 1
    assert sink.counts.connections == 1


def test_a_copy_other_than_the_announced_one_goes_on_a_new_connection(sink: Sink) -> None:
    """The server answered the announced DATA with 354 and waits for its content: a
    send of another copy hangs up first, so the announced copy reaches nobody."""
    smtp = transport(sink)
    first = smtp.send(SENDER, "a@x.org", copy("a@x.org"), TAGS, Envelope(SENDER, "b@x.org", b"B"))
    other = smtp.send(SENDER, "c@x.org", copy("c@x.org"), TAGS)
    smtp.close()
    assert first.sent and other.sent
    assert [m.recipients for m in sink.messages] == [["a@x.org"], ["c@x.org"]]
    assert sink.counts.connections == 2


def test_closing_with_an_announced_copy_hangs_up(sink: Sink) -> None:
    """The server waits for the announced copy's content, where QUIT would be read as
    content: the session hangs up instead, and the server keeps nothing of it."""
    smtp = transport(sink)
    sent = smtp.send(SENDER, "a@x.org", copy("a@x.org"), TAGS, Envelope(SENDER, "b@x.org", b"B"))
    smtp.close()
    assert sent.sent
    assert [m.recipients for m in sink.messages] == [["a@x.org"]]
    assert sink.counts.messages == 1


def test_an_announced_copy_meets_a_server_that_hung_up() -> None:
    """A server that hangs up after each message never read the announced commands:
    the announced copy goes out on a new connection, as a success."""
    with Sink(close_after_each=True) as sink:
        smtp = transport(sink)
        results = chain(smtp, ["a@x.org", "b@x.org", "c@x.org"])
        smtp.close()
    assert [r.outcome for r in results] == [SENT] * 3
    assert [m.recipients for m in sink.messages] == [["a@x.org"], ["b@x.org"], ["c@x.org"]]
    assert sink.counts.connections == 3


def test_an_announced_copy_meets_a_service_closing(sink: Sink) -> None:
    """A 421 for the announced copy's recipient: temporary, halt, as without it."""
    smtp = transport(sink)
    results = chain(smtp, ["a@x.org", "closing@x.org"])
    smtp.close()
    assert results[0].sent
    assert (results[1].outcome, results[1].halt) == (TEMPORARY, True)
    assert results[1].detail == "smtp: RCPT TO refused: 421 4.3.2 shutting down"


def test_without_pipelining_nothing_is_announced() -> None:
    with Sink(pipelining=False) as sink:
        smtp = transport(sink)
        results = chain(smtp, ["a@x.org", "b@x.org"])
        smtp.close()
    assert [r.outcome for r in results] == [SENT, SENT]
    assert sink.announced == 0
    assert transactions(sink)[:3] == [["MAIL"], ["RCPT"], ["DATA"]]


def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    """A server that does not offer PIPELINING gets one command at a time, and the
    same bytes."""
    with Sink(pipelining=False) as sink:
        smtp = transport(sink)
        result = smtp.send(SENDER, "fay@x.org", copy("fay@x.org"), TAGS)
        refused = smtp.send(SENDER, "nobody@x.org", copy("nobody@x.org"), TAGS)
        smtp.close()
    assert result.sent and refused.outcome == PERMANENT
    assert transactions(sink) == [["MAIL"], ["RCPT"], ["DATA"], ["MAIL"], ["RCPT"], ["RSET"]]
    assert sink.messages[0].content == copy("fay@x.org").replace(b"\n", CRLF)


def test_routemail_run_pipelines_to_every_member(
    project: Project, sink: Sink, routemail_cli: RunCli
) -> None:
    """`routemail run` over a pipelining server delivers each member a personal copy,
    records S for each, and writes each transaction's commands at once."""
    members = ["ann@example.com", "bob@example.net", "cy@example.org"]
    project.write_config(
        BASE_CONFIG
        + f"""
[delivery]
transport = "smtp"
rate = 1000

[delivery.smtp]
host = "127.0.0.1"
port = {sink.port}
tls = "none"

[lists.helpers]
posters = "anyone"
members = {members!r}
""".replace("'", '"')
    )
    raw = (
        b"From: Dee <dee@example.com>\nTo: helpers@lists.example.org\nSubject: Saturday\n"
        b"Message-ID: <pipe-1@example.com>\n\nWho can help?\n.\n..and a dotted line\n"
    )
    verdicts = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
    msg_id = project.spool.receive(raw, ["helpers@lists.example.org"], verdicts).id
    run = routemail_cli("run")
    assert run.returncode == 0, run.stderr
    assert sorted(r for m in sink.messages for r in m.recipients) == sorted(members)
    for message in sink.messages:
        assert message.recipients[0].encode() in message.content
        assert b"\r\n.\r\n..and a dotted line\r\n" in message.content
    assert transactions(sink) == [PIPELINED] * 3
    sent = [
        line.split()[2]
        for line in project.spool.read_sidecar(msg_id).splitlines()
        if line.startswith("S ")
    ]
    assert sorted(sent) == sorted(members)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_an_address_that_would_end_the_command_is_refused_before_sending(
    pipelining: bool,
) -> None:
    """A recipient with a line break or angle bracket in it could add commands of its
    own: it is refused (permanent) without a byte written, and the session goes on."""
    hostile = ["x@y.org>\r\nRCPT TO:<evil@z.org", "x@y.org> NOTIFY=NEVER", "a\x00@y.org"]
    with Sink(pipelining=pipelining) as sink:
        smtp = transport(sink)
        results = [smtp.send(SENDER, r, copy("x@y.org"), TAGS) for r in hostile]
        sender = smtp.send("bounces@x.org>\nDATA", "ann@x.org", copy("ann@x.org"), TAGS)
        sent = smtp.send(SENDER, "ann@x.org", copy("ann@x.org"), TAGS)
        smtp.close()
    assert [r.outcome for r in results] == [PERMANENT] * 3
    assert "not a mail address" in results[0].detail
    assert sender.outcome == PERMANENT and sent.sent
    assert [m.recipients for m in sink.messages] == [["ann@x.org"]]
    assert sink.commands.count("RCPT") == 1
