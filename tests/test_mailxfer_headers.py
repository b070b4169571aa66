"""Verdicts and recipients read from stored SES headers, and sweep ages."""

from __future__ import annotations

import io
from email.message import Message
from pathlib import Path

import pytest

from mailxfer.headers import (
    parse_headers,
    read_header_block,
    recipients_from_headers,
    verdicts_from_headers,
)
from mailxfer.sweep import parse_age

DATA = Path(__file__).resolve().parent / "data" / "ses"


def headers_of(raw: bytes) -> Message:
    return parse_headers(read_header_block(io.BytesIO(raw)))


def test_stored_pass_message_reads_all_pass() -> None:
    """A message SES passed on every check reads PASS for all five verdicts."""
    msg = headers_of((DATA / "stored-pass.eml").read_bytes())
    assert verdicts_from_headers(msg) == dict.fromkeys(
        ("dkim", "dmarc", "spf", "spam", "virus"), "PASS"
    )
    assert recipients_from_headers(msg) == ["volunteers@lists.example.org"]


def test_forged_results_below_ses_headers_do_not_count() -> None:
    """Only the topmost SES-written headers count; a sender's forged PASS lower down does not."""
    msg = headers_of((DATA / "stored-fail-headers.eml").read_bytes())
    verdicts = verdicts_from_headers(msg)
    assert verdicts["spam"] == "FAIL"
    assert verdicts["dkim"] == verdicts["dmarc"] == verdicts["spf"] == "FAIL"


def test_no_ses_headers_is_never_a_pass() -> None:
    """A message with no SES headers reads DISABLED, never PASS, for every verdict."""
    msg = headers_of(b"From: a@example.com\r\nTo: list@lists.example.org\r\n\r\nbody\r\n")
    assert set(verdicts_from_headers(msg).values()) == {"DISABLED"}


def test_forged_authserv_is_ignored() -> None:
    """Authentication-Results from another server id are not SES's results."""
    msg = headers_of(
        b"Authentication-Results: mx.evil.example; dkim=pass; dmarc=pass; spf=pass\r\n\r\n"
    )
    assert verdicts_from_headers(msg)["dkim"] == "DISABLED"


def test_result_words_map_to_ses_values() -> None:
    """RFC 8601 result words map onto SES values: none is GRAY, temperror is
    PROCESSING_FAILED, and one passing DKIM signature among several is a PASS."""
    msg = headers_of(
        b"Authentication-Results: amazonses.com; spf=temperror; dkim=fail;\r\n"
        b" dkim=pass header.i=@example.com; dmarc=none\r\n\r\n"
    )
    verdicts = verdicts_from_headers(msg)
    assert (verdicts["spf"], verdicts["dkim"], verdicts["dmarc"]) == (
        "PROCESSING_FAILED",
        "PASS",
        "GRAY",
    )


def test_recipients_fall_back_to_visible_addresses_on_our_domains() -> None:
    """Without an envelope clause, To and Cc addresses on the configured domains are used."""
    msg = headers_of(
        b"Received: from x by inbound-smtp.us-east-1.amazonaws.com with SMTP id 1;"
        b" Sun, 22 Nov 2026 22:33:57 +0000\r\n"
        b"To: Volunteers <Volunteers@Lists.Example.org>, friend@elsewhere.example\r\n"
        b"Cc: board@lists.example.org\r\n\r\n"
    )
    assert recipients_from_headers(msg, ["lists.example.org"]) == [
        "volunteers@lists.example.org",
        "board@lists.example.org",
    ]


def test_header_block_read_leaves_stream_rewound() -> None:
    """Reading the header block leaves the stream at the start for the post."""
    stream = io.BytesIO(b"Subject: x\r\n\r\nbody")
    assert read_header_block(stream) == b"Subject: x"
    assert stream.read() == b"Subject: x\r\n\r\nbody"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("45", 45)]
)
def test_parse_age(text: str, seconds: float) -> None:
    """Ages are a number with an optional s, m, h or d unit."""
    assert parse_age(text) == seconds


def test_parse_age_refuses_nonsense() -> None:
    """A malformed age names the accepted forms."""
    with pytest.raises(ValueError, match="like 90s, 10m"):
        parse_age("ten minutes")
