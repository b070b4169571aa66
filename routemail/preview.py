"""A held message shown safely: its headers, its text, its attachments, its HTML sanitised.

Nothing in a preview is active: the text is plain text (an HTML-only message is
converted), attachments are listed by name, type and size and never opened, and
the HTML is passed through routemail.safehtml. The MIME structure is read with
routemail.rewrite.mime, whose bounds (nesting depth, number of parts, field
lengths) hold here too, so a hostile message costs no more to preview than to
route. A part that cannot be read is reported in problems, never raised.
"""

from __future__ import annotations

import binascii
import email.parser
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from typing import Any

from routemail import safehtml
from routemail.message import parse_headers, text_of
from routemail.rewrite.decorate import text_codec
from routemail.rewrite.encode import one_line
from routemail.rewrite.mime import MAX_DEPTH, MAX_PARTS, Part, TooComplex, scan

SUMMARY = ("From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID")
MAX_TEXT_CHARS = 200_000  # text shown at most; the rest is cut, and the preview says so
MAX_HEADER_CHARS = 2_000  # one summary header value at most
MAX_NAME_CHARS = 200  # an attachment's name at most
# A text part is decoded from at most this many bytes of its body (4 bytes can carry
# one character; base64 makes 3 bytes of 4).
MAX_TEXT_INPUT = MAX_TEXT_CHARS * 6
_NOT_BASE64 = bytes(b for b in range(256) if not re.match(rb"[A-Za-z0-9+/]", bytes([b])))
# Controls other than tab and line feed, and the characters that reorder or hide text.
_UNWANTED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True)
class Attachment:
    """A part that is not the message's text: described, never opened."""

    name: str  # as the sender named it (no path), or "" when unnamed
    content_type: str
    size: int  # bytes once decoded

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.content_type, "size": self.size}


@dataclass(frozen=True)
class Preview:
    """What a moderator may safely see of a message."""

    headers: list[tuple[str, str]]  # the summary headers present, in SUMMARY's order
    text: str  # the text body: text/plain parts, else the HTML converted
    html: str  # the HTML parts sanitised, "" when there are none
    attachments: list[Attachment]
    problems: list[str] = field(default_factory=list)  # what could not be read, or was cut

    def as_json(self) -> dict[str, Any]:
        return {
            "headers": {name.lower(): value for name, value in self.headers},
            "text": self.text,
            "attachments": [a.as_json() for a in self.attachments],
            "problems": list(self.problems),
        }


def preview(raw: bytes) -> Preview:
    """The safe view of raw, whatever raw holds."""
    buf = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    problems: list[str] = []
    try:
        top = scan(buf, b"\n", 0, len(buf), top=True, open_signed=True)
    except TooComplex as exc:
        return Preview(_summary(raw), "", "", [], [f"the body cannot be read: {exc}"])
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    problems.extend(_limits_met(top))
    for part in _leaves(top):
        kind = _text_kind(part)
        if kind is None:
            attachments.append(_attachment(buf, part))
            continue
        text, trouble = _decoded_text(buf, part)
        problems.extend(trouble)
        (plain if kind == "plain" else html).append(text)
    body = "\n\n".join(plain) if plain else "\n\n".join(safehtml.to_text(h) for h in html)
    if len(body) > MAX_TEXT_CHARS:
        problems.append(f"text past its first {MAX_TEXT_CHARS} characters not shown")
        body = body[:MAX_TEXT_CHARS]
    sanitised = "\n".join(safehtml.sanitise(h) for h in html)
    return Preview(_summary(raw), _visible(body), sanitised, attachments, _unique(problems))


def _summary(raw: bytes) -> list[tuple[str, str]]:
    msg = parse_headers(raw)
    found = []
    for name in SUMMARY:
        values = [one_line(text_of(v))[:MAX_HEADER_CHARS] for v in msg.get_all(name, [])]
        if values:
            found.append((name, ", ".join(values)))
    return found


def _leaves(top: Part) -> list[Part]:
    """The parts that hold content, in order: not the multiparts around them (a
    multipart whose parts cannot be found is read as what it holds)."""
    return [p for p in top.walk() if not p.children]


def _limits_met(top: Part) -> list[str]:
    """The bounds of reading the structure that this message reached (the scan's other
    remarks are about repairing a copy, not about what a reader sees)."""
    found = []
    for part in top.walk():
        if part.unread_from is not None:
            found.append(f"more than {MAX_PARTS} MIME parts: the rest not shown")
        if any("nested deeper" in p for p in part.problems):
            found.append(f"MIME parts nested deeper than {MAX_DEPTH} levels listed unread")
    return found


def _text_kind(part: Part) -> str | None:
    """The text a part is ("plain" or "html"), or None for an attachment."""
    if part.info.disposition == "attachment":
        return None
    return {"text/plain": "plain", "text/html": "html"}.get(part.ctype)


def _body(buf: bytes, part: Part, limit: int | None = None) -> bytes:
    """The part's body decoded from its transfer encoding (leniently: mail is often
    slightly wrong), from at most limit bytes of it."""
    end = part.end if limit is None else min(part.end, part.body_start + limit)
    data = buf[part.body_start : end]
    if part.info.cte == "base64":
        data = data.translate(None, _NOT_BASE64)
        data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
        data += b"=" * (-len(data) % 4)
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            return b""
    if part.info.cte == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


def _decoded_text(buf: bytes, part: Part) -> tuple[str, list[str]]:
    """The part's text and what was done to read it (cut, charset wrong or unknown)."""
    problems = []
    if part.end - part.body_start > MAX_TEXT_INPUT:
        problems.append(f"a {part.ctype} part past its first {MAX_TEXT_INPUT} bytes not shown")
    data = _body(buf, part, MAX_TEXT_INPUT)
    declared = (part.info.charset or "us-ascii").lower()
    codec = text_codec(declared)
    if codec is not None:
        try:
            return data.decode(codec.name), problems
        except UnicodeDecodeError:
            pass
    for guess in ("utf-8", "windows-1252"):
        try:
            text = data.decode(guess)
        except UnicodeDecodeError:
            continue
        if codec is None or declared not in ("us-ascii", "ascii"):
            # (8-bit text labelled ASCII is how older mailers write: not worth a word)
            problems.append(f"{part.ctype} labelled charset {declared!r} read as {guess}")
        return text, problems
    problems.append(f"{part.ctype} in an unreadable charset: shown with replacement marks")
    return data.decode("utf-8", "replace"), problems


def _attachment(buf: bytes, part: Part) -> Attachment:
    if part.info.cte == "base64":
        digits = len(buf[part.body_start : part.end].translate(None, _NOT_BASE64))
        size = digits * 3 // 4
    else:
        size = len(_body(buf, part))
    return Attachment(_name(part), part.ctype, size)


def _name(part: Part) -> str:
    """The attachment's file name as sent, one line, without any folder."""
    fields = [f for f in part.fields if f.key.startswith("content-")]
    if not fields:
        return ""
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
            b"".join(f.to_bytes() for f in fields)
        )
        name = msg.get_filename() or msg.get_param("name") or ""
        if isinstance(name, tuple):  # an RFC 2231 value the parser left undecoded
            name = email.utils.collapse_rfc2231_value(name)
        text = text_of(name)
    except Exception:
        return ""
    return one_line(re.split(r"[/\\]", text)[-1])[:MAX_NAME_CHARS]


def _visible(text: str) -> str:
    """text without controls (tab and line feed kept) or characters that reorder it."""
    return _UNWANTED.sub("\ufffd", text)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
