"""Everything on the SMTP wire is CRLF: the one normalisation (transports/wire.py) and
`routemail run` sending notices with hostile originals to a real aiosmtpd server."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routemail.notices import Notice
from routemail.transports.wire import CRLF, LF, line_breaks, wire_form
from tests.conftest import Project, RunCli
from tests.smtp_relay import Recorder, relay_for

VERDICTS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
# The SMTP smuggling pattern: a bare CR before and after the dot, then a second
# transaction for a server that ends DATA at "\r.\r" or "\n.\n".
SMUGGLED = (
    b"\r.\r\nMAIL FROM:<mallory@evil.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
    b"From: ceo@example.org\r\nSubject: smuggled\r\n\r\nPay now.\r\n\r.\r\n"
    b"\n.\nQUIT\n"
)


def assert_wire_form(data: bytes) -> None:
    """data has CRLF line breaks only, no NUL, and no line over 998 octets."""
    assert b"\x00" not in data
    assert not re.search(rb"\r(?!\n)", data), "bare CR"
    assert not re.search(rb"(?<!\r)\n", data), "bare LF"
    longest = max(len(line) for line in data.split(CRLF))
    assert longest <= 998, f"a line of {longest} octets"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_come_out_in_wire_form(data: bytes) -> None:
    """Whatever the bytes, the wire form has only CRLF line breaks and no NUL, keeps
    every other byte in order, and is its own wire form."""
    out = wire_form(data)
    assert b"\x00" not in out
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", out)
    assert out.replace(CRLF, b"") == re.sub(rb"\r\n|\r|\n|\x00", b"", data)
    assert wire_form(out) == out
    assert b"\r" not in line_breaks(data, LF)


def test_clean_message_is_passed_on_as_it_is() -> None:
    """A message already in wire form is the same object: no copy, no regular expression."""
    clean = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    assert wire_form(clean) is clean
    assert wire_form(b"From: a@example.com\n\nbody\n") == b"From: a@example.com\r\n\r\nbody\r\n"


@pytest.fixture
def smtp(project: Project) -> Iterator[Recorder]:
    """An aiosmtpd server on loopback, and lists.toml sending through it."""
    with relay_for(project, "retries = 1\nbackoff_seconds = 0.01\n") as relay:
        yield relay


def test_hostile_originals_reach_the_wire_only_as_crlf(
    project: Project, smtp: Recorder, routemail_cli: RunCli
) -> None:
    """A held post and a message to an unknown address, both carrying the smuggling
    pattern (bare CRs around a dot, then MAIL FROM), a bare LF and NUL, one with a
    2,000-octet line: the moderation request and the admin forward arrive in wire
    form (CRLF only, no NUL, lines of at most 998 octets), as does the author's
    notice, no second transaction is smuggled in, and the originals are still
    attached and readable."""
    held = (
        b"From: Mallory <mallory@evil.example>\r\nTo: volunteers@lists.example.org\r\n"
        b"Subject: Hello\r\nMessage-ID: <smuggle-held@evil.example>\r\n\r\nHi all.\r\n"
        + SMUGGLED
        + b"NUL\x00 and a bare\nLF\r\n"
    )
    unknown = (
        b"From: Mallory <mallory@evil.example>\r\nTo: nolist@lists.example.org\r\n"
        b"Subject: Hello admin\r\nMessage-ID: <smuggle-unknown@evil.example>\r\n\r\n"
        + b"x" * 2000
        + b"\r\n"
        + SMUGGLED
    )
    spool = project.spool
    spool.receive(held, ["volunteers@lists.example.org"], VERDICTS)
    spool.receive(unknown, ["nolist@lists.example.org"], VERDICTS)
    result = routemail_cli("run")
    assert result.returncode == 0, result.stderr

    # The admin's forward, the moderator's request and the author's "held" notice.
    addresses = ["admin@example.org", "coordinator@example.org", "mallory@evil.example"]
    got = sorted((m.recipients[0], m) for m in smtp.messages)
    assert [r for r, _ in got] == addresses
    assert smtp.rcpt_attempts.keys() == set(addresses)
    for _, delivered in got:
        assert_wire_form(delivered.content)

    forward = email.message_from_bytes(got[0][1].content, policy=email.policy.default)
    (original,) = [p for p in forward.walk() if p.get_filename() == "original.eml"]
    assert original.get_payload(decode=True) == wire_form(unknown)

    request = email.message_from_bytes(got[1][1].content, policy=email.policy.default)
    (attached,) = [p for p in request.walk() if p.get_content_type() == "message/rfc822"]
    inner = attached.get_payload()[0]
    assert inner["Subject"] == "Hello"
    assert inner["Message-ID"] == "<smuggle-held@evil.example>"


@pytest.mark.parametrize("headers_only", [False, True])
def test_notice_is_in_wire_form_whatever_the_original(headers_only: bool) -> None:
    """A notice about an original with a 3,000-octet header line, bare CRs and NUL, under
    a 5,000-character subject (quoted in its text): CRLF only, no NUL, no line over 998
    octets; the subject is one encoded field and the text reads back whole."""
    original = (
        b"From: m@evil.example\rX-Blob: " + b"b" * 3000 + b"\n"
        b"Subject: hi\x00\r\n\r\nbody\r.\r\nMAIL FROM:<m@evil.example>\n"
    )
    subject = "Moderation needed: " + "s" * 5000
    notice = Notice(
        from_addr="volunteers-owner@lists.example.org",
        from_name="volunteers moderation",
        to=["coordinator@example.org"],
        subject=subject,
        text=f"Subject: {subject}\n",
        original=original,
        headers_only=headers_only,
        domain="lists.example.org",
    ).as_bytes()
    assert_wire_form(notice)
    msg = email.message_from_bytes(notice, policy=email.policy.default)
    assert str(msg["Subject"]) == subject
    text = msg.get_body(("plain",))
    assert text is not None and text.get_content().rstrip("\n") == f"Subject: {subject}"
