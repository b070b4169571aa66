"""Shared checks for the copy tests: the list they use and what every copy must satisfy."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import re

from routemail.config import MailingList, Site
from routemail.copyheaders import ListIdentity

SITE = Site("lists.example.org", "admin@example.org", "https://lists.example.org", "Example Lists")
SECRET = b"golden-secret-0123456789abcdef-0123456789"
RECIPIENT = "member@example.net"
NOW = 1741600000.0  # 2025-03-10T09:46:40Z, for Date fields the copy adds
FOOTER = "-- \nYou are on {list} as {recipient}.\nLeave: {unsubscribe_url}"


# The fields the copy writes itself; the others are the author's, passed on cleaned.
WRITTEN = {
    "from",
    "reply-to",
    "sender",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-post",
    "list-help",
    "precedence",
    "x-loop",
    "x-original-from",
}


def mlist(**changes: str) -> MailingList:
    settings = {
        "name": "volunteers",
        "description": "All volunteers",
        "subject_prefix": "[volunteers]",
        "footer": FOOTER,
        **changes,
    }
    return MailingList(**settings)  # type: ignore[arg-type]


def identity(**changes: str) -> ListIdentity:
    return ListIdentity(mlist(**changes), SITE, SECRET)


def strict_parse(data: bytes) -> email.message.EmailMessage:
    """The copy parsed with policy.strict, which raises on any MIME structure defect."""
    msg = email.parser.BytesParser(policy=email.policy.strict).parsebytes(data)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


CONTROLS = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def header_block(data: bytes) -> bytes:
    return re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]


def check_line_length(data: bytes) -> None:
    """Every line at most 998 octets, its line break not counted (RFC 5322 2.1.1)."""
    longest = max(len(line) for line in re.split(rb"\r?\n", data))
    assert longest <= 998, f"a line of {longest} octets"


def check_crlf_only(data: bytes) -> None:
    """Every line break is CR LF; no bare CR or bare LF anywhere."""
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r"), "bare CR or LF"


def check_header_text(data: bytes) -> None:
    """The header block is ASCII without control characters (CR LF folding aside)."""
    head = header_block(data)
    assert head.isascii(), "8-bit bytes in the header block"
    assert not CONTROLS.search(head), "control characters in the header block"


def check_wire(data: bytes) -> None:
    """What any message sent satisfies, read without the email package: one kind of
    line ending, lines of at most 998 octets, a clean header block."""
    lf_only = b"\r" not in data
    assert lf_only or data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r"), (
        "mixed line endings"
    )
    check_line_length(data)
    check_header_text(data)


def check_sendable(data: bytes) -> email.message.EmailMessage:
    """What every copy satisfies: one line ending, lines of at most 998 characters,
    an ASCII header block, a strict re-parse with no defect on any part."""
    check_wire(data)
    msg = strict_parse(data)
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    for name in ("Date", "Message-ID", "From", "List-Id", "List-Unsubscribe", "Sender"):
        assert len(msg.get_all(name, [])) == 1, name
    for name, value in msg.items():
        if name.lower() in WRITTEN:
            assert not value.defects, (name, value.defects)
    return msg
