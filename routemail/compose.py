"""Small messages written from text: confirmations, API posts, transactional mail.

The header fields come from the header encoder (routemail.rewrite.encode), never from
the email package's header classes: those decode RFC 2047 words found in the text
they are given and, on Python before the CVE-2024-6923 fix, write out the line breaks
hidden in them. The email package only encodes the body.
"""

from __future__ import annotations

import email.policy
import email.utils
from collections.abc import Sequence
from email.message import EmailMessage

from routemail.rewrite.headers import Field, address_field, text_field
from routemail.transports.wire import CRLF, LF

# CRLF line breaks and bodies folded at 78: what SMTP wants.
POLICY = email.policy.SMTP.clone(max_line_length=78)


def addresses(name: str, pairs: Sequence[tuple[str, str]], utf8: bool = False) -> Field:
    """An address field; every address must be one routemail checked, and ASCII unless
    utf8 (a message to a UTF-8 address carries it in its header, RFC 6532)."""
    field = address_field(name, list(pairs), utf8)
    if field is None:
        raise ValueError(f"{name}: no address that can stand in a header")
    return field


def subject(text: str) -> Field:
    return text_field("Subject", text)


def made(name: str, value: str) -> Field:
    """A field whose value routemail made itself (a date, an id, a constant)."""
    return Field(name, b" " + value.encode("ascii"))


def standard(domain: str) -> list[Field]:
    """Date and a new Message-ID on domain."""
    return [
        made("Date", email.utils.formatdate(usegmt=True)),
        made("Message-ID", email.utils.make_msgid(domain=domain)),
    ]


def message(fields: Sequence[Field], text: str, html: str | None = None) -> bytes:
    """The message: fields, then a UTF-8 text body (with an HTML alternative), CRLF."""
    body = EmailMessage(policy=POLICY)
    body.set_content(_encodable(text), charset="utf-8")
    if html:
        body.add_alternative(_encodable(html), subtype="html", charset="utf-8")
    head = b"".join(f.to_bytes() for f in fields).replace(LF, CRLF)
    return head + body.as_bytes()


def _encodable(text: str) -> str:
    """text with lone surrogates (JSON allows them) replaced, so UTF-8 can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return text
