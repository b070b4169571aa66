"""Which receipts are the same message: the fingerprint of routemail.identity."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routemail.identity import HEADER_SCAN_LIMIT, Fingerprint, fingerprint, id_of_message

MESSAGE = (
    b"From: Ann Author <ann@example.com>\n"
    b"To: volunteers@lists.example.org\n"
    b"Subject: Saturday shift\n"
    b"Message-ID: <fp@example.com>\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"\n"
    b"Who can cover Saturday?\n"
)


def test_trace_fields_and_line_ends_do_not_count() -> None:
    """Received, Return-Path, X-SES-*, DKIM-Signature and Authentication-Results, CRLF for
    LF, refolding and field order change nothing: they differ from delivery to delivery."""
    head, body = MESSAGE.split(b"\n\n", 1)
    fields = head.split(b"\n")
    redelivered = (
        b"Return-Path: <bounce@example.com>\r\n"
        b"Received: from mx.example.net by inbound-smtp; Tue, 24 Nov 2026 08:00:00 +0000\r\n"
        b"X-SES-Spam-Verdict: PASS\r\n"
        b"Authentication-Results: amazonses.com; dkim=pass\r\n"
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com;\r\n b=abc\r\n"
        + b"\r\n".join(reversed(fields)).replace(b"Subject: ", b"Subject:\r\n  ")
        + b"\r\n\r\n"
        + body.replace(b"\n", b"\r\n")
    )
    assert fingerprint(redelivered) == fingerprint(MESSAGE)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Saturday?", b"Sunday?"),
        (b"ann@example.com", b"mallory@evil.example"),
        (b"Subject: Saturday shift", b"Subject: Sunday shift"),
        (b"To: volunteers@", b"To: board@"),
        (b"<fp@example.com>", b"<fp2@example.com>"),
        (b"charset=utf-8", b"charset=iso-8859-1"),
        (b"\n\n", b"\nSender: m@evil.example\n\n"),
        (b"\n\n", b"\nCc: m@evil.example\n\n"),
        (b"\n\n", b"\nIn-Reply-To: <other@example.com>\n\n"),
        (b"Saturday?\n", b"Saturday?\n\nP.S. and Sunday\n"),
    ],
)
def test_body_and_author_fields_count(old: bytes, new: bytes) -> None:
    """Any change to the body or to a field the author wrote is a different message."""
    assert fingerprint(MESSAGE.replace(old, new, 1)) != fingerprint(MESSAGE)


def test_a_field_moved_into_the_body_is_a_different_message() -> None:
    """Where the header block ends counts: a field cannot be moved across the blank line."""
    moved = MESSAGE.replace(b"Content-Type: text/plain; charset=utf-8\n\n", b"\n")
    moved += b"Content-Type: text/plain; charset=utf-8\n"
    assert fingerprint(moved) != fingerprint(MESSAGE)


def test_no_header_block_in_the_first_mib_is_all_body() -> None:
    """Without a blank line in the first MiB, every byte counts as body."""
    raw = b"X-Long: " + b"y" * HEADER_SCAN_LIMIT + b"\n\nbody\n"
    assert fingerprint(raw) != fingerprint(raw.replace(b"X-Long", b"Received"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.binary(max_size=3000),
    st.lists(st.integers(min_value=1, max_value=700), max_size=10),
)
def test_any_chunking_gives_the_same_fingerprint(tail: bytes, cuts: list[int]) -> None:
    """However the bytes arrive (the receiver streams them), the fingerprint is the one of
    the whole message."""
    raw = MESSAGE.replace(b"\n\n", b"\r\n" + tail[:40] + b"\r\n\r\n") + tail
    fp = Fingerprint()
    start = 0
    for size in cuts:
        fp.update(raw[start : start + size])
        start += size
    fp.update(raw[start:])
    assert fp.hexdigest() == fingerprint(raw)


def test_the_id_is_still_the_message_ids() -> None:
    """The fingerprint never changes the id of a first receipt: the Message-ID's MD5."""
    assert id_of_message(MESSAGE) == id_of_message(MESSAGE.replace(b"Saturday?", b"Sunday?"))
