"""Reading what routing needs from a raw message's headers, defensively.

Hostile or broken headers never raise here: a value that cannot be read is
simply absent, and routing decides what absence means.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from routemail.author import Author, author_of
from routemail.identity import header_end
from routemail.rewrite.headers import MAX_PARSED, split_block

SUMMARY_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")
# Headers by which auto-responders mark themselves (RFC 3834 and common practice).
AUTO_REPLY_MARKERS = ("X-Autoreply", "X-Autorespond")
BULK_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")
_KEYWORD = re.compile(r"\s*([A-Za-z0-9-]+)")


def parse_headers(raw: bytes) -> Message:
    """The header block as a compat32 Message (it never raises on bad input). Only the
    header block is handed over: with headersonly the parser still reads the whole body
    line by line (a quarter of a second a MB)."""
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    end = header_end(raw)
    try:
        return parser.parsebytes(raw if end is None else raw[:end], headersonly=True)
    except Exception:
        return Message()


def text_of(value: object) -> str:
    """A header value decoded from RFC 2047 into one line of text (a value longer than
    MAX_PARSED is left encoded: decoding is quadratic in its number of encoded words)."""
    if value is None:
        return ""
    if len(str(value)) > MAX_PARSED:
        return " ".join(str(value).split())
    try:
        parts = email.header.decode_header(str(value))
        text = str(email.header.make_header(parts))
    except Exception:
        text = str(value)
    return " ".join(text.split())


@dataclass(frozen=True)
class Headers:
    """The few headers routing decides on."""

    author: Author  # who wrote it (routemail.author), or why that is unknown
    subject: str
    list_ids: tuple[str, ...]
    loops: tuple[str, ...]
    message_id: str
    automatic: bool  # an auto-reply or bulk mail: never an approval
    auto_submitted: str  # its Auto-Submitted keyword unless "no" (RFC 3834), else ""
    report: bool  # a delivery (or read) report: multipart/report, or a null Return-Path

    @classmethod
    def of(cls, raw: bytes) -> Headers:
        msg = parse_headers(raw)
        return cls(
            author=author_of(from_values(raw)),
            subject=text_of(msg.get("Subject")),
            list_ids=tuple(text_of(v).lower() for v in msg.get_all("List-Id", [])),
            loops=tuple(text_of(v).lower() for v in msg.get_all("X-Loop", [])),
            message_id=text_of(msg.get("Message-ID")),
            automatic=_automatic(msg),
            auto_submitted=_auto_submitted(msg),
            report=_report(msg),
        )

    @property
    def machine_made(self) -> str | None:
        """Why no person sent this (a report, or Auto-Submitted), or None."""
        if self.report:
            return "a delivery status notification"
        if self.auto_submitted:
            return f"an automatic message (Auto-Submitted: {self.auto_submitted})"
        return None


def from_values(raw: bytes) -> list[bytes]:
    """The From fields' values as written, split as the copy splits them, so routing
    and the copy read the same field."""
    block = split_block(raw, 0, len(raw), top=True)
    return [f.value for f in block.fields if f.key == "from"]


def _auto_submitted(msg: Message) -> str:
    """The first Auto-Submitted keyword other than "no" (comments and parameters after
    it ignored); "" when every one is "no" or there is none."""
    for value in msg.get_all("Auto-Submitted", []):
        match = _KEYWORD.match(text_of(value))
        keyword = match.group(1).lower() if match else ""
        if keyword != "no":
            return keyword or "(empty)"
    return ""


def _report(msg: Message) -> bool:
    return_path = text_of(msg.get("Return-Path", "x")).replace(" ", "")
    return msg.get_content_type() == "multipart/report" or return_path == "<>"


def _automatic(msg: Message) -> bool:
    auto = text_of(msg.get("Auto-Submitted", "no")).lower()
    precedence = text_of(msg.get("Precedence")).lower()
    return (
        not auto.startswith("no")
        or precedence in BULK_PRECEDENCE
        or any(marker in msg for marker in AUTO_REPLY_MARKERS)
    )


def header_summary(raw: bytes) -> dict[str, str]:
    msg = parse_headers(raw)
    return {name.lower(): text_of(msg.get(name)) for name in SUMMARY_HEADERS if name in msg}
