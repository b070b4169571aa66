"""The form a message takes on its way out: one kind of line break throughout, no NUL.

A bare CR or LF inside a message (in a broken or hostile original attached to a
notice, say) ends a line for some servers and not for others: "\\r.\\r\\n" followed by
"MAIL FROM:" is the SMTP smuggling pattern, a second message hidden in the first. NUL
is refused or mangled by many servers. So every message routemail hands to SMTP or SES
goes through wire_form() first, the one place where this is decided: each CR, LF and
CR LF becomes CR LF, and NUL bytes are dropped.

The outbox is a Maildir, where local delivery conventionally stores LF line breaks;
it keeps each message's own line break (LF or CRLF) with the same cleaning, through
line_breaks().
"""

from __future__ import annotations

import re

CRLF = b"\r\n"
LF = b"\n"
NUL = b"\x00"
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def wire_form(message: bytes) -> bytes:
    """message as it goes to SMTP and SES: CRLF line breaks only, no NUL."""
    return line_breaks(message, CRLF)


def line_breaks(message: bytes, eol: bytes) -> bytes:
    """message with every CR, LF and CR LF made eol (CRLF or LF) and NUL bytes dropped.

    The usual cases (already clean, or LF-only on its way to CRLF) cost a few
    byte counts and at most one replace, not a regular expression."""
    if NUL in message:
        message = message.replace(NUL, b"")
    crs = message.count(b"\r")
    if crs == 0:
        return message if eol == LF else message.replace(LF, CRLF)
    if eol == CRLF and crs == message.count(LF) == message.count(CRLF):
        return message
    return _LINE_BREAK.sub(eol, message)


def own_line_break(message: bytes) -> bytes:
    """The line break a message's first line ends with (LF when it has none)."""
    first = message.find(LF)
    return CRLF if first > 0 and message[first - 1 : first] == b"\r" else LF
