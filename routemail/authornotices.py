"""Telling a post's author what became of it on a list: held, rejected, expired.

A notice is queued as routemail's own mail (routemail.outgoing: paced,
retried and suppressed like any copy) from LIST-owner@domain, and a T line on
the post records it, so each is told once; a post held for two lists gets one
notice naming both. Only a post whose verdicts all pass, written by a person,
is told it is held or has expired: the From of failing mail may be forged,
and the notice would go to someone who never wrote (backscatter). A rejection
is told whenever the author is known: a moderator looked at the post.
"""

from __future__ import annotations

from collections.abc import Sequence

from routemail import addresses, compose, moderate, outgoing, sidecar
from routemail.actionlog import ActionLog
from routemail.config import Config
from routemail.errors import RoutemailError
from routemail.message import Headers
from routemail.spool import Spool

HELD, REJECTED, EXPIRED = "held", "rejected", "expired"


def may_tell_held(history: sidecar.History, headers: Headers, config: Config) -> bool:
    """Whether the author may be told the post is held: a person wrote it and every
    verdict passes."""
    return (
        headers.author.address is not None
        and not headers.machine_made
        and not headers.automatic
        and not moderate.verdict_reasons(history.verdicts, config.moderation)
    )


def tell(
    config: Config,
    spool: Spool,
    msg_id: str,
    headers: Headers,
    event: str,
    lists: Sequence[str],
    reason: str = "",
    log: ActionLog | None = None,
) -> str | None:
    """Queue the notice of event on lists to the author and record it (T lines);
    the notice's queue id, or None when the author is unknown."""
    author = headers.author.address
    if author is None or not lists:
        return None
    raw = _notice(config, author, headers, event, lists, reason)
    try:
        receipt, _ = outgoing.queue(config, spool, raw, [author])
    except RoutemailError as exc:
        if log:
            log.write(msg_id, f"{', '.join(lists)}: the author cannot be told ({exc})")
        return None
    spool.append(msg_id, [sidecar.event(sidecar.TOLD, name, event, author) for name in lists])
    spool.rescan_mark.touch()  # a run going on sends it before it ends
    if log:
        log.write(msg_id, f"{', '.join(lists)}: {author} told it was {event} ({receipt.id})")
    return receipt.id


def _notice(
    config: Config, author: str, headers: Headers, event: str, lists: Sequence[str], reason: str
) -> bytes:
    domain = config.site.domain
    names = " and ".join(f"{name}@{domain}" for name in lists)
    subject = headers.subject or "(no subject)"
    text = {
        HELD: (
            f"Your message to {names} is waiting for a moderator.\n\n"
            f"Subject: {subject}\n\n"
            "A moderator will approve or reject it; you will hear if it is rejected, or if"
            f" nobody decides within {config.moderation.hold_days:g} days. An approved"
            " message simply reaches the list.\n"
        ),
        REJECTED: (
            f"Your message to {names} was rejected by a moderator and will not be sent"
            f" to the list.\n\nSubject: {subject}\n\n"
            + (f"The moderator's reason:\n\n  {reason}\n" if reason else "No reason was given.\n")
        ),
        EXPIRED: (
            f"Your message to {names} waited {config.moderation.hold_days:g} days without"
            f" a moderator's approval and will not be sent to the list.\n\nSubject: {subject}\n"
        ),
    }[event]
    owner = f"{lists[0]}-owner@{domain}"
    fields = [
        compose.addresses("From", [(f"{lists[0]} moderation", owner)]),
        # A UTF-8 domain as its A-label when the local part is ASCII (no SMTPUTF8 or
        # UTF-8 header needed then); a UTF-8 local part as written (RFC 6532).
        compose.addresses("To", [("", addresses.ascii_domain(author))], utf8=True),
        compose.subject(f"Your message was {event}: {subject}"),
        *compose.standard(domain),
        compose.made("Auto-Submitted", "auto-replied"),
    ]
    return compose.message(fields, text)
