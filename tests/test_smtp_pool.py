"""SmtpPool against a real server over loopback sockets (tests/smtp_sink.py): several
copies in flight, PIPELINING (MAIL, RCPT and DATA in one write, the next copy's
commands after the content before it), every refusal mapped, connections lost and
reopened, and servers that answer what no SMTP server should."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest

from routemail import config as configuration
from routemail.copy import CopyMaker
from routemail.transports import PERMANENT, SENT, TEMPORARY, Result
from routemail.transports.smtp_pool import SmtpPool
from routemail.transports.wire import CRLF, WRITE_BYTES, smtp_data, unstuffed
from tests.conftest import BASE_CONFIG, Project, RunCli
from tests.copy_support import NOW, identity
from tests.smtp_sink import GREETING, Sink

SENDER = "volunteers-bounces@lists.example.org"
TAGS = {"list": "volunteers", "message": "abc"}
INPUTS = Path(__file__).parent / "data" / "copy" / "in"
PIPELINED = ["MAIL", "RCPT", "DATA"]
# Long enough that a pool which hangs fails the test instead of the suite.
HUNG = 15.0


def open_pool(
    sink: Sink,
    *,
    connections: int = 1,
    retries: int = 0,
    timeout: float = 5.0,
    max_backoff: float = 0.0,
    rate: float | None = None,
) -> SmtpPool:
    """A pool to sink. max_backoff 0 means no waiting after a failure: the breaker's
    cooldown and the backoff before a retry are over at once, so what comes after a
    failure is tried straight away."""
    settings = configuration.Smtp(
        host="127.0.0.1", port=sink.port, tls="none", timeout=timeout, connections=connections
    )
    return SmtpPool(settings, rate, retries=retries, backoff=0.01, max_backoff=max_backoff)


def settle(pool: SmtpPool, futures: Sequence[Future[Result]]) -> list[Result]:
    """drive() the pool, as a run does while it waits, until every Future is done."""
    give_up = time.monotonic() + HUNG
    while not all(future.done() for future in futures):
        assert time.monotonic() < give_up, "the pool stopped making progress"
        pool.drive()
    return [future.result() for future in futures]


def deliver(
    pool: SmtpPool, people: Sequence[str], copies: Mapping[str, bytes] | None = None
) -> list[Result]:
    """A copy for each of people handed over at once, and their results."""
    futures = [pool.submit(SENDER, r, copies[r] if copies else copy(r), TAGS) for r in people]
    return settle(pool, futures)


def deliver_queued(
    pool: SmtpPool, sink: Sink, people: Sequence[str], copies: Mapping[str, bytes] | None = None
) -> list[Result]:
    """As deliver(): the first of people alone, opening the connection, then the others
    handed over while the server is paused, so that all are queued before it answers
    any. (Otherwise it may answer a copy's DATA before the next copy is handed over,
    and then there is nothing yet to announce.)"""
    first, *others = people
    results = deliver(pool, [first], copies)
    with sink.paused():
        futures = [pool.submit(SENDER, r, copies[r] if copies else copy(r), TAGS) for r in others]
    return results + settle(pool, futures)


def wait_for(condition: Callable[[], bool]) -> None:
    give_up = time.monotonic() + HUNG
    while not condition():
        assert time.monotonic() < give_up, "never came to pass"
        time.sleep(0.01)


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A pipelining sink that answers MAIL and RCPT only once DATA has arrived: a
    client that waited for those replies before writing DATA would wait in vain."""
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


def received(sink: Sink) -> list[list[str]]:
    return [m.recipients for m in sink.messages]


def outcomes(results: Sequence[Result]) -> list[str]:
    return [r.outcome for r in results]


# -- servers that misbehave --------------------------------------------------------


def test_a_greeting_that_is_no_reply_keeps_the_copy_queued(sink: Sink) -> None:
    """Garbage, or a line longer than any server sends, instead of the 220 greeting:
    a temporary failure naming the server, and a copy goes through once it talks
    SMTP again."""
    pool = open_pool(sink)
    try:
        sink.greeting = b"hello, this is not SMTP\r\n"
        garbage = pool.send(SENDER, "ann@x.org", copy("ann@x.org"), TAGS)
        sink.greeting = b"220 " + b"x" * 100_000 + CRLF
        long = pool.send(SENDER, "ann@x.org", copy("ann@x.org"), TAGS)
        sink.greeting = GREETING
        sent = pool.send(SENDER, "bob@x.org", copy("bob@x.org"), TAGS)
    finally:
        pool.close()
    for failed in (garbage, long):
        assert (failed.outcome, failed.halt) == (TEMPORARY, True)
        assert failed.detail.startswith(f"smtp: 127.0.0.1:{sink.port} ")
    assert "does not talk SMTP" in garbage.detail and "this is not SMTP" in garbage.detail
    assert sent.sent
    assert received(sink) == [["bob@x.org"]]


def test_garbage_instead_of_a_reply_code(sink: Sink) -> None:
    """A line that is no SMTP reply where RCPT's answer should be: the copy is a
    temporary failure that names what came, the connection is dropped, and the
    next copy goes out on a new one."""
    pool = open_pool(sink)
    try:
        garbled, sent = deliver(pool, ["garbled@x.org", "bob@x.org"])
    finally:
        pool.close()
    assert (garbled.outcome, garbled.halt) == (TEMPORARY, True)
    assert "unexpected from the server" in garbled.detail
    assert "hello, this is not SMTP" in garbled.detail
    assert sent.sent
    assert received(sink) == [["bob@x.org"]]
    assert sink.counts.connections == 2


@pytest.mark.parametrize("hostile", ["longline", "manylines", "endless"])
def test_a_reply_longer_than_any_server_sends(sink: Sink, hostile: str) -> None:
    """A 250 of one 100 KB line, of 5,000 continuation lines, or 100 KB without an end:
    over 64 KB is no SMTP server talking (RFC 5321 allows 512 bytes a line), so the
    copy is a temporary failure, not sent, and the connection is dropped."""
    pool = open_pool(sink)
    try:
        failed, sent = deliver(pool, [f"{hostile}@x.org", "bob@x.org"])
    finally:
        pool.close()
    assert (failed.outcome, failed.halt) == (TEMPORARY, True), failed
    assert "longer than any server sends" in failed.detail
    assert sent.sent
    assert received(sink) == [["bob@x.org"]]


def test_an_unasked_reply(sink: Sink) -> None:
    """A second reply after the one to the content, when nothing else was asked: the
    answer before it still counts (the copy was accepted, and is not sent again), but
    the server is not following the conversation, so the connection is dropped and
    the next copy goes out on a new one."""
    pool = open_pool(sink)
    try:
        (chatty,) = deliver(pool, ["chatty@x.org"])
        (sent,) = deliver(pool, ["bob@x.org"])
    finally:
        pool.close()
    assert chatty.sent
    assert sent.sent
    assert received(sink) == [["chatty@x.org"], ["bob@x.org"]]
    assert sink.counts.connections == 2


def test_a_server_that_stops_answering_after_354() -> None:
    """The server takes DATA and the content, then answers nothing: after `timeout`
    the copy is a temporary failure saying so, not a run that hangs; the copy queued
    behind it goes out on a new connection, untried before."""
    with Sink(hold_replies=True) as sink:
        pool = open_pool(sink, timeout=0.5)
        try:
            silent, sent = deliver(pool, ["silent@x.org", "bob@x.org"])
        finally:
            pool.close()
    assert (silent.outcome, silent.halt) == (TEMPORARY, True)
    assert silent.detail == f"smtp: 127.0.0.1:{sink.port}: TimeoutError: no answer in 0.5 s"
    assert sent.sent and "tries" not in sent.detail
    assert received(sink) == [["bob@x.org"]]
    assert sink.counts.connections == 2


def test_a_server_that_stops_reading_mid_content() -> None:
    """The server takes DATA, then reads no more: a copy of 8 MB fills what the
    sockets hold, the pool waits for room no longer than `timeout`, and the copy is
    a temporary failure; the next copy goes out on a new connection."""
    big = copy("stalled@x.org", body=("y" * 76 + "\n") * (8 * 2**20 // 77))
    with Sink() as sink:
        pool = open_pool(sink, timeout=0.5)
        try:
            stalled, sent = deliver(
                pool,
                ["stalled@x.org", "bob@x.org"],
                {"stalled@x.org": big, "bob@x.org": copy("bob@x.org")},
            )
        finally:
            pool.close()
    assert (stalled.outcome, stalled.halt) == (TEMPORARY, True)
    assert stalled.detail == f"smtp: 127.0.0.1:{sink.port}: TimeoutError: no answer in 0.5 s"
    assert sent.sent
    assert received(sink) == [["bob@x.org"]]
    assert sink.counts.connections == 2


def test_a_server_that_hangs_up_after_354(sink: Sink) -> None:
    """The connection closed as the content goes out: the copy may or may not have
    arrived, so it is a temporary failure; the copy announced after it was never
    read by anyone and goes out on a new connection."""
    pool = open_pool(sink)
    try:
        hangup, sent = deliver(pool, ["hangup@x.org", "bob@x.org"])
    finally:
        pool.close()
    assert (hangup.outcome, hangup.halt) == (TEMPORARY, True)
    assert hangup.detail.startswith(f"smtp: 127.0.0.1:{sink.port}: ")
    assert "Error" in hangup.detail  # ConnectionResetError or BrokenPipeError
    assert sent.sent
    assert received(sink) == [["bob@x.org"]]
    assert sink.counts.connections == 2


# -- pipelining --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["03-alternative-qp.eml", "05-mixed-attachment.eml", "06-latin1-8bit.eml"]
)
def test_pipelined_copies_arrive_byte_for_byte(sink: Sink, name: str) -> None:
    """Real copies in flight together over one connection: MAIL, RCPT and DATA in one
    write, each copy's commands after the content of the one before it, and the
    server stores exactly each copy in wire form."""
    maker = CopyMaker((INPUTS / name).read_bytes(), identity(footer=".{recipient}\n."), now=NOW)
    recipients = [f"member{i}@example.net" for i in range(4)]
    copies = {r: maker.copy_for(r) for r in recipients}
    pool = open_pool(sink)
    try:
        results = deliver_queued(pool, sink, recipients, copies)
    finally:
        pool.close()
    assert outcomes(results) == [SENT] * 4, results
    assert transactions(sink) == [PIPELINED] * 4
    assert sink.announced == 2  # after the second copy's content, and the third's
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
    piece as the socket takes them and arrives whole."""
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
    pool = open_pool(sink)
    try:
        assert pool.send(SENDER, "member@example.net", big, TAGS).outcome == SENT
    finally:
        pool.close()
    (message,) = sink.messages
    assert message.content == bytes(big).replace(CRLF, b"\n").replace(b"\n", CRLF)


def test_copies_spread_over_several_connections(sink: Sink) -> None:
    """Copies handed over together go out over several connections, never more than
    `connections`, each exactly once, to its own recipient. (How many are opened
    depends on how soon the server answers: a connection that is free again takes
    the next copy.)"""
    people = [f"member{i}@example.net" for i in range(12)]
    pool = open_pool(sink, connections=3)
    try:
        results = deliver(pool, people)
    finally:
        pool.close()
    assert outcomes(results) == [SENT] * 12
    assert 2 <= sink.counts.connections <= 3
    assert sorted(r for m in sink.messages for r in m.recipients) == sorted(people)
    for message in sink.messages:
        assert message.content == copy(message.recipients[0]).replace(b"\n", CRLF)


def test_refused_recipients_are_mapped_and_reset(sink: Sink) -> None:
    """A 550 at RCPT is permanent, a 451 temporary for that copy alone; each failed
    transaction is reset and the next copy goes out on the same connection."""
    pool = open_pool(sink)
    try:
        results = deliver(pool, ["ann@x.org", "nobody@x.org", "busy@x.org", "bob@x.org"])
    finally:
        pool.close()
    assert outcomes(results) == [SENT, PERMANENT, TEMPORARY, SENT]
    assert results[1].detail == "smtp: RCPT TO refused: 550 5.1.1 no such user here"
    assert results[2].detail.startswith("smtp: RCPT TO refused: 451 4.2.1")
    assert not results[2].halt and not results[2].throttled
    assert received(sink) == [["ann@x.org"], ["bob@x.org"]]
    # nobody's commands went with ann's content; busy and bob follow a reset.
    assert transactions(sink) == [PIPELINED, PIPELINED, ["RSET"], PIPELINED, ["RSET"], PIPELINED]
    assert sink.counts.connections == 1


def test_a_temporary_refusal_is_retried_in_the_run(sink: Sink) -> None:
    """A 451 is tried `retries` more times, the last answer the copy's result; the
    copies behind it are not held up for it."""
    pool = open_pool(sink, retries=2, max_backoff=0.05)
    try:
        busy, sent = deliver(pool, ["busy@x.org", "bob@x.org"])
    finally:
        pool.close()
    assert busy.outcome == TEMPORARY and busy.detail.endswith("(3 tries this run)")
    assert sink.commands.count("RCPT") == 4
    assert sent.sent
    assert received(sink) == [["bob@x.org"]]


def test_refused_data_and_refused_content(sink: Sink) -> None:
    """A 554 to DATA and a 550 after the content are permanent refusals of that copy,
    named by where they came; nothing is stored and the next copy goes through."""
    pool = open_pool(sink)
    try:
        results = deliver(pool, ["nodata@x.org", "spam@x.org", "cy@x.org"])
    finally:
        pool.close()
    assert outcomes(results) == [PERMANENT, PERMANENT, SENT]
    assert results[0].detail == "smtp: DATA refused: 554 5.7.1 DATA refused for this recipient"
    assert results[1].detail == "smtp: end of data refused: 550 5.7.1 content refused"
    assert received(sink) == [["cy@x.org"]]
    # After DATA's refusal, not after the content's: the end of data ends a transaction.
    assert sink.commands.count("RSET") == 1
    assert sink.counts.connections == 1


def test_refused_sender_and_login_trouble(sink: Sink) -> None:
    """A 553 at MAIL is permanent; a 530 concerns our login: temporary, and the relay
    is left alone for a while (halt): the copy after it is not attempted."""
    pool = open_pool(sink, max_backoff=30)
    try:
        refused = pool.send("refused@lists.example.org", "ann@x.org", copy("ann@x.org"), TAGS)
        login = pool.send("login@lists.example.org", "ann@x.org", copy("ann@x.org"), TAGS)
        held = pool.send(SENDER, "ann@x.org", copy("ann@x.org"), TAGS)
    finally:
        pool.close()
    assert (refused.outcome, refused.halt) == (PERMANENT, False)
    assert refused.detail == "smtp: MAIL FROM refused: 553 5.7.1 sender refused"
    assert (login.outcome, login.halt) == (TEMPORARY, True)
    assert "530 5.7.0" in login.detail and "credentials" in login.detail
    assert held.outcome == TEMPORARY
    assert held.detail.startswith("not attempted: smtp: MAIL FROM refused: 530 5.7.0")
    assert sink.messages == []


def test_content_wanted_after_a_failed_pipeline_is_ended_empty() -> None:
    """A server that answers 354 though it refused every recipient gets a lone ".",
    so no copy goes to anybody, and the next transaction is clean."""
    with Sink(hold_replies=True, lax_data=True) as sink:
        pool = open_pool(sink)
        try:
            refused, sent = deliver(pool, ["nobody@x.org", "eve@x.org"])
        finally:
            pool.close()
    assert refused.outcome == PERMANENT and "550 5.1.1" in refused.detail
    assert sent.sent
    assert received(sink) == [["eve@x.org"]]
    assert sink.counts.refused == 1  # the empty content, refused


def test_the_following_copy_is_announced_with_the_content_before_it(sink: Sink) -> None:
    """Each copy's MAIL, RCPT and DATA go out in the write that ends the copy before
    it: one round trip a copy. Every copy arrives whole, to its own recipient."""
    people = [f"member{i}@example.net" for i in range(5)]
    pool = open_pool(sink)
    try:
        results = deliver_queued(pool, sink, people)
    finally:
        pool.close()
    assert outcomes(results) == [SENT] * 5
    assert sink.announced == 3  # each copy but the first two (see deliver_queued)
    assert transactions(sink) == [PIPELINED] * 5
    assert sink.counts.connections == 1
    for message, recipient in zip(sink.messages, people, strict=True):
        assert message.recipients == [recipient]
        assert message.content == copy(recipient).replace(b"\n", CRLF)


def test_refusals_around_an_announced_copy(sink: Sink) -> None:
    """Content refused: the copy announced after it still goes (the end of data ends a
    transaction; no RSET). An announced copy refused at RCPT or DATA is refused as
    any other, its transaction reset, and the next copy goes on the same connection."""
    people = ["ann@x.org", "spam@x.org", "cy@x.org", "nobody@x.org", "dee@x.org"]
    people += ["nodata@x.org", "eve@x.org"]
    pool = open_pool(sink)
    try:
        results = deliver_queued(pool, sink, people)
    finally:
        pool.close()
    assert outcomes(results) == [SENT, PERMANENT, SENT, PERMANENT, SENT, PERMANENT, SENT]
    assert results[1].detail == "smtp: end of data refused: 550 5.7.1 content refused"
    assert results[3].detail == "smtp: RCPT TO refused: 550 5.1.1 no such user here"
    assert results[5].detail == "smtp: DATA refused: 554 5.7.1 DATA refused for this recipient"
    assert sink.announced == 3  # cy after spam, nobody after cy, nodata after dee
    assert received(sink) == [["ann@x.org"], ["cy@x.org"], ["dee@x.org"], ["eve@x.org"]]
    assert sink.commands.count("RSET") == 2
    assert sink.counts.connections == 1


def test_service_closing_for_an_announced_copy(sink: Sink) -> None:
    """A 421 at RCPT for the copy announced after another, and the server hangs up: the
    421 is that copy's outcome (temporary, halt), and the copy after it goes out on a
    new connection."""
    pool = open_pool(sink)
    try:
        results = deliver(pool, ["ann@x.org", "closing@x.org", "dee@x.org"])
    finally:
        pool.close()
    sent, closing, after = results
    assert sent.sent and after.sent
    assert (closing.outcome, closing.halt) == (TEMPORARY, True)
    assert closing.detail == "smtp: RCPT TO refused: 421 4.3.2 shutting down"
    assert received(sink) == [["ann@x.org"], ["dee@x.org"]]
    assert sink.counts.connections == 2


def test_service_closing_after_the_content_hands_the_announced_copy_back(sink: Sink) -> None:
    """A 421 after a copy's content, the next copy's commands written with that
    content: the 421 is the first copy's outcome, and the announced one, which the
    server never took, is handed back untried and sent over a new connection."""
    pool = open_pool(sink)
    try:
        shutdown, sent = deliver(pool, ["shutdown@x.org", "bob@x.org"])
    finally:
        pool.close()
    assert (shutdown.outcome, shutdown.halt) == (TEMPORARY, True)
    assert shutdown.detail == "smtp: end of data refused: 421 4.3.2 shutting down"
    assert sent.sent and "tries" not in sent.detail
    assert received(sink) == [["bob@x.org"]]
    assert sink.counts.connections == 2


def test_a_server_that_hangs_up_after_each_message() -> None:
    """A server that closes the connection after each message never read the commands
    announced after it: each next copy goes out on a new connection, as a success,
    without a failed try counted (retries = 0 here)."""
    with Sink(close_after_each=True) as sink:
        pool = open_pool(sink)
        try:
            results = deliver(pool, ["a@x.org", "b@x.org", "c@x.org"])
        finally:
            pool.close()
    assert outcomes(results) == [SENT] * 3
    assert received(sink) == [["a@x.org"], ["b@x.org"], ["c@x.org"]]
    assert sink.counts.connections == 3


def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    """A server that does not offer PIPELINING gets one command at a time, nothing
    announced, and the same bytes."""
    with Sink(pipelining=False) as sink:
        pool = open_pool(sink)
        try:
            results = deliver(pool, ["fay@x.org", "nobody@x.org", "gus@x.org"])
        finally:
            pool.close()
    assert outcomes(results) == [SENT, PERMANENT, SENT]
    assert sink.announced == 0
    assert transactions(sink) == [
        *(["MAIL"], ["RCPT"], ["DATA"]),
        *(["MAIL"], ["RCPT"], ["RSET"]),
        *(["MAIL"], ["RCPT"], ["DATA"]),
    ]
    assert received(sink) == [["fay@x.org"], ["gus@x.org"]]
    assert sink.messages[0].content == copy("fay@x.org").replace(b"\n", CRLF)


def test_closing_the_pool_with_copies_queued() -> None:
    """Copies not yet sent when the pool closes settle as not attempted (the next run
    sends them); the idle connection is left with QUIT, and nothing of the queued
    copies reaches the server. At rate 1 the later copies wait for their token."""
    with Sink() as sink:
        pool = open_pool(sink, rate=1)
        futures = [pool.submit(SENDER, r, copy(r), TAGS) for r in ("a@x.org", "b@x.org", "c@x.org")]
        (first,) = settle(pool, futures[:1])
        pool.close()
    assert first.sent
    for future in futures[1:]:
        assert future.result() == Result(TEMPORARY, "not attempted: the run stopped")
    assert sink.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert received(sink) == [["a@x.org"]]


def test_closing_the_pool_with_a_copy_in_transaction(sink: Sink) -> None:
    """A copy whose commands went out but not its content: closing hangs up (QUIT
    would be read as content), so the server stores nothing of it."""
    pool = open_pool(sink)
    (first,) = deliver(pool, ["a@x.org"])
    with sink.paused():  # so that DATA is not answered before the pool closes
        future = pool.submit(SENDER, "b@x.org", copy("b@x.org"), TAGS)
        pool.close()
    assert first.sent
    assert future.result() == Result(TEMPORARY, "not attempted: the run stopped")
    wait_for(lambda: sink.commands.count("DATA") == 2)  # what b's commands came to
    assert "QUIT" not in sink.commands
    assert received(sink) == [["a@x.org"]]


def test_closing_the_pool_with_a_copy_not_yet_answered(sink: Sink) -> None:
    """A copy whose content went out but was not answered may have arrived: closing
    says so, rather than that it was not attempted (either way a later run sends it)."""
    pool = open_pool(sink)
    future = pool.submit(SENDER, "silent@x.org", copy("silent@x.org"), TAGS)
    wait_for(lambda: "DATA" in sink.commands)
    pool.drive(timeout=2.0)  # its 354 comes, and the content goes out with it
    pool.close()
    assert future.result() == Result(TEMPORARY, "the run stopped before the server answered")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_an_address_that_would_end_the_command_is_refused_before_sending(
    pipelining: bool,
) -> None:
    """A recipient with a line break or angle bracket in it could add commands of its
    own: it is refused (permanent) without a byte written, and the others go on."""
    hostile = ["x@y.org>\r\nRCPT TO:<evil@z.org", "x@y.org> NOTIFY=NEVER", "a\x00@y.org"]
    with Sink(pipelining=pipelining) as sink:
        pool = open_pool(sink)
        try:
            results = deliver(pool, [*hostile, "ann@x.org"])
            sender = pool.send("bounces@x.org>\nDATA", "ann@x.org", copy("ann@x.org"), TAGS)
        finally:
            pool.close()
    assert outcomes(results) == [PERMANENT] * 3 + [SENT]
    assert "not a mail address" in results[0].detail
    assert sender.outcome == PERMANENT
    assert received(sink) == [["ann@x.org"]]
    assert sink.commands.count("RCPT") == 1


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
