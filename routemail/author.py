"""Who wrote a message: the addr-spec of the single mailbox in its From field.

Every decision about the author (posting rights, unsubscribe by mail,
approvals, the copy's From) reads it from here, so they cannot disagree. The
field is parsed as written: RFC 2047 encoded words are decoded only in the
display name, after the address is known, so
`=?us-ascii?q?chair=40example.org?= <mallory@evil.example>` is mallory.
A value that needs repair to yield one address has no author: the caller
holds the message with the reason instead of guessing.

The address may be anything RFC 5322 and RFC 6532 allow in a mailbox
(routemail.addresses.normalize_mailbox): a quoted local part, UTF-8 written as
raw UTF-8 (never decoded from an encoded word or guessed from another charset),
a single-label domain, a domain literal.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import errors

from routemail import addresses

# One mailbox with a long display name fits in far less; more is not a From
# anyone writes, and it bounds the parser's work on hostile input.
MAX_FROM_CHARS = 2000
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class Author:
    """The author's address, or why there is none; the display name is for show only."""

    address: str | None
    name: str = ""
    problem: str | None = None


def _unknown(problem: str) -> Author:
    return Author(None, "", problem)


def author_of(values: Sequence[bytes | str]) -> Author:
    """The author from the raw values of a message's From fields (as many as it has)."""
    if not values:
        return _unknown("no From header")
    if len(values) > 1:
        return _unknown(f"{len(values)} From headers")
    text, utf8 = _text(values[0])
    if not text:
        return _unknown("an empty From header")
    if len(text) > MAX_FROM_CHARS:
        return _unknown(f"a From header longer than {MAX_FROM_CHARS} characters")
    if _CONTROL.search(text):
        return _unknown("control characters in the From header")
    try:
        parsed = email.policy.strict.header_factory("From", text)
        mailboxes = list(parsed.addresses)
        groups = [g for g in parsed.groups if g.display_name is not None]
        defects = list(parsed.defects)
    except Exception:  # the parser gives up on some hostile values
        return _unknown("a From header that does not parse")
    if groups:
        return _unknown("group syntax in the From header")
    # RFC 6532 allows UTF-8 in the local part; the email package still calls it a defect.
    if any(not isinstance(d, errors.NonASCIILocalPartDefect) for d in defects):
        return _unknown("a From header that does not parse")
    if not mailboxes:
        return _unknown("no address in the From header")
    if len(mailboxes) > 1:
        return _unknown(f"{len(mailboxes)} addresses in the From header")
    mailbox = mailboxes[0]
    address = addresses.normalize_mailbox(mailbox.username, mailbox.domain)
    if address is None or not _as_written(address, mailbox.addr_spec, text):
        return _unknown("a From address that does not parse")
    if not (address.isascii() or utf8):
        return _unknown("a non-ASCII From address not written in UTF-8")
    return Author(address, _shown_name(mailbox.display_name))


def _as_written(address: str, addr_spec: str, text: str) -> bool:
    """Whether the address stands in the field as written: nothing decoded or repaired
    into it, no comment or space inside it. The domain may differ in case, and a local
    part that needs no quotes may have them ("ann"@example.org)."""
    local, domain = addresses.split(address)
    spellings = [address] if local.startswith('"') else [address, f'"{local}"@{domain}']
    lowered = text.lower()
    return "=?" not in addr_spec and any(s.lower() in lowered for s in spellings)


def _shown_name(display_name: str) -> str:
    """The display name, unless it looks like an address: copies show the author's
    name, and a name such as "chair@example.org" would pass for someone else."""
    name = " ".join(display_name.split())
    return "" if "@" in name or "<" in name else name


def _text(value: bytes | str) -> tuple[str, bool]:
    """The field value unfolded; 8-bit bytes read as UTF-8, else Windows-1252 (for the
    display name only); and whether it is UTF-8, as RFC 6532 writes addresses."""
    utf8 = True
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("cp1252", errors="replace")
            utf8 = False
    else:
        text = value
    return _UNFOLD.sub("", text).strip(), utf8
