"""Transactional mail (password resets, invitations, reports) through the spool.

It is queued like list mail, so pacing, retries, suppression, the transport
and the sidecar trail all apply; only the per-recipient list rewriting does
not. The sender must be on the site's domain: SES sends only from verified
identities.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Sequence

from routemail import addresses
from routemail import compose as composing
from routemail.author import author_of
from routemail.config import Config
from routemail.errors import RoutemailError
from routemail.identity import header_end
from routemail.message import from_values, parse_headers, text_of
from routemail.spool import Receipt, Spool

RECIPIENT_HEADERS = ("To", "Cc", "Bcc")
MAX_RECIPIENTS = 1000


def recipients_of(raw: bytes) -> list[str]:
    """Every address in To, Cc and Bcc, once each."""
    msg = parse_headers(raw)
    values = [text_of(v) for name in RECIPIENT_HEADERS for v in msg.get_all(name, [])]
    found = [addresses.normalize(a) for _, a in email.utils.getaddresses(values) if a]
    return list(dict.fromkeys(a for a in found if a))


def check_sender(raw: bytes, config: Config) -> None:
    author = author_of(from_values(raw))
    norm = author.address
    domain = config.site.domain
    if norm is None:
        raise RoutemailError(
            f"the message has no valid From header ({author.problem}); "
            f"give it one address on {domain}"
        )
    _, sender_domain = addresses.split(norm)
    if sender_domain != domain and not sender_domain.endswith("." + domain):
        raise RoutemailError(
            f"From {norm} is not on {domain}: only the site's own domain may send "
            "(SES sends only from verified identities)"
        )


def complete(raw: bytes, domain: str) -> bytes:
    """Drop Bcc (recipients must not see it); add Date and Message-ID if missing."""
    end = header_end(raw)
    if end is None:
        raise RoutemailError("the message has no header block")
    newline = b"\r\n" if b"\r\n" in raw[:end] else b"\n"
    kept: list[bytes] = []
    skipping = False
    for line in raw[:end].splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == b"bcc"
        if not skipping:
            kept.append(line)
    names = {line.split(b":", 1)[0].strip().lower() for line in kept if b":" in line}
    added = []
    if b"date" not in names:
        added.append(b"Date: " + email.utils.formatdate(usegmt=True).encode() + newline)
    if b"message-id" not in names:
        added.append(b"Message-ID: " + email.utils.make_msgid(domain=domain).encode() + newline)
    return b"".join(added + kept) + raw[end:]


def queue(
    config: Config, spool: Spool, raw: bytes, to: Sequence[str] = ()
) -> tuple[Receipt, list[str]]:
    """Check, complete and queue a message; (receipt, recipients)."""
    check_sender(raw, config)
    recipients = list(dict.fromkeys(to)) or recipients_of(raw)
    if not recipients:
        raise RoutemailError("no recipients: give --to or To/Cc/Bcc headers")
    if len(recipients) > MAX_RECIPIENTS:
        raise RoutemailError(f"{len(recipients)} recipients; at most {MAX_RECIPIENTS} a message")
    data = complete(raw, config.site.domain)
    with spool.incoming() as incoming:
        incoming.write(data)
        return incoming.commit_outgoing(recipients), recipients


def compose(
    config: Config,
    to: Iterable[str],
    subject: str,
    text: str,
    html: str | None = None,
    from_local: str = "no-reply",
    reply_to: str | None = None,
) -> bytes:
    """A message from fields, as the HTTP API receives them."""
    site = config.site
    fields = [
        composing.addresses("From", [(site.name, f"{from_local}@{site.domain}")]),
        composing.addresses("To", [("", a) for a in to]),
        *([composing.addresses("Reply-To", [("", reply_to)])] if reply_to else []),
        composing.subject(subject),
        *composing.standard(site.domain),
        composing.made("Auto-Submitted", "auto-generated"),
    ]
    return composing.message(fields, text, html)
