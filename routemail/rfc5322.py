"""Whether bytes offered as mail are an RFC 5322 message at all: a header block first."""

from __future__ import annotations

import re

# RFC 5322 field-name: printable US-ASCII except the colon, then the colon
# (obsolete syntax allows blanks before it).
_FIRST_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")


def header_problem(head: bytes) -> str | None:
    """Why `head` (the message's first bytes) cannot be a message, or None if it can be.

    Only the first line is judged: mail with a broken header further down
    is still mail and routing copes with it, but bytes that do not open
    with a header field (a picture, random data, a lone body) are not.
    """
    if _FIRST_FIELD.match(head):
        return None
    return "not an RFC 5322 message: it does not start with a header field such as From:"
