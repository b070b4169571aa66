"""Moderation: why a message is held, the request to moderators, and approvals.

A moderator approves by replying to the request. The reply goes to
approve+<message>-<token>@domain, where <message> is the held message's id
and <token> an HMAC over (message id, list) with the server secret, both in
lower-case base32 so an MTA that folds case cannot break them. The reply
counts only if the token verifies for a list the message is held for, its
author (routemail.author) moderates that list, and DMARC passed or DKIM
passed for a domain aligned with the author's (routemail.approvals).
"""

from __future__ import annotations

import base64
import binascii
import getpass
from collections.abc import Mapping
from dataclasses import dataclass

from routemail import sidecar, tokens, webhooks
from routemail.actionlog import ActionLog
from routemail.author import Author
from routemail.commandline import routemail_command
from routemail.config import Moderation, Site
from routemail.errors import RoutemailError
from routemail.lists import ResolvedList
from routemail.message import Headers
from routemail.notices import Notice
from routemail.spool import Spool

APPROVE_PREFIX = "approve+"


def verdict_reasons(verdicts: Mapping[str, str], policy: Moderation) -> list[str]:
    """A reason for every SES verdict that does not pass."""
    return [
        f"{name.upper()} verdict is {value}"
        for name, value in verdicts.items()
        if value not in policy.passing.get(name, frozenset({"PASS"}))
    ]


def poster_reason(mlist: ResolvedList, author: Author) -> str | None:
    """Why the author may not post unmoderated; an unknown author never may, even
    where anyone can post: a copy must not go out from someone it cannot name."""
    if author.address is None:
        return f"the author is unknown: {author.problem}"
    if mlist.may_post(author.address):
        return None
    if mlist.settings.posters == "members":
        return f"sender {author.address} is not a member of {mlist.name}"
    return f"sender {author.address} may not post to {mlist.name}"


def shown(author: Author) -> str:
    """The author for a notice's text: the address, or why there is none."""
    return author.address or f"unknown ({author.problem})"


def approval_address(secret: bytes, msg_id: str, listname: str, site: Site) -> str:
    token = tokens.moderation_token(secret, msg_id, listname)
    return f"{APPROVE_PREFIX}{_id_to_base32(msg_id)}-{token}@{site.domain}"


def parse_approval_address(local_part: str) -> tuple[str, str] | None:
    """(held message id, token) from an approval address's local part."""
    local = local_part.lower()
    if not local.startswith(APPROVE_PREFIX):
        return None
    encoded, sep, token = local[len(APPROVE_PREFIX) :].partition("-")
    if not sep or len(token) != tokens.MODERATION_TOKEN_CHARS:
        return None
    msg_id = _base32_to_id(encoded)
    return (msg_id, token) if msg_id else None


def _id_to_base32(msg_id: str) -> str:
    raw = base64.urlsafe_b64decode(msg_id + "=" * (-len(msg_id) % 4))
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _base32_to_id(text: str) -> str | None:
    try:
        raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16:
        return None
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Held:
    """What a moderation request needs to say."""

    msg_id: str
    mlist: ResolvedList
    reasons: list[str]
    headers: Headers
    virus: bool
    hold_days: float


def request(held: Held, raw: bytes, site: Site, secret: bytes, moderators: list[str]) -> bytes:
    """The moderation request: why, how to approve, and the original attached."""
    name = held.mlist.name
    reply = approval_address(secret, held.msg_id, name, site)
    author = shown(held.headers.author)
    attached = (
        "Only its headers are attached: SES found a virus in it."
        if held.virus
        else "The message is attached."
    )
    text = "\n".join(
        [
            f"A message to {name}@{site.domain} is waiting for a moderator.",
            "",
            f"From:    {author}",
            f"Subject: {held.headers.subject or '(none)'}",
            "",
            "It was held because:",
            *(f"  - {r}" for r in held.reasons),
            "",
            "To approve it, reply to this message; the text of your reply does not matter.",
            f"To reject it, do nothing: it expires after {held.hold_days:g} days.",
            "From a shell: " + routemail_command("approve", held.msg_id, name),
            "",
            attached,
        ]
    )
    return Notice(
        from_addr=f"{name}-owner@{site.domain}",
        from_name=f"{name} moderation",
        to=moderators,
        subject=f"Moderation needed for {name}: {held.headers.subject or '(no subject)'}",
        text=text,
        original=raw,
        headers_only=held.virus,
        reply_to=reply,
        domain=site.domain,
    ).as_bytes()


def decide_from_shell(
    spool: Spool,
    msg_id: str,
    listname: str,
    reject: bool = False,
    hooks: webhooks.Outbox | None = None,
) -> str:
    """`routemail approve|reject`: an A or J line on a held message; the line written."""
    listname = listname.lower()
    if listname not in spool.history(msg_id).held_lists:
        raise RoutemailError(
            f"{msg_id} is not held for {listname}; "
            f"`{routemail_command('show', msg_id)}` shows its history"
        )
    who = f"shell:{getpass.getuser()}"
    verb = "rejected" if reject else "approved"
    code = sidecar.REJECTED if reject else sidecar.APPROVED
    # An approval sets the bit (deliver it); a rejection leaves nothing to do.
    spool.append(msg_id, [sidecar.event(code, listname, who)], pending=None if reject else True)
    log = ActionLog(spool.root / "log")
    try:
        log.write(msg_id, f"{listname}: {verb} by {who}")
    finally:
        log.close()
    if hooks is not None:
        hooks.decision(verb, spool, msg_id, listname, who, "shell")
    return f"{msg_id}: {verb} for {listname} by {who}"
