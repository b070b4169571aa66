"""Moderation: why a message is held, and the request to moderators.

A moderator approves by replying to the request, or rejects by writing to
its second address. The reply goes to approve+<message>-<token>@domain (or
reject+…), where <message> is the held message's id and <token> an HMAC over
(message id, list, and for a rejection the word reject) with the server
secret, both in lower-case base32 so an MTA that folds case cannot break
them. The reply counts only if the token verifies for a list the message is
held for, its author (routemail.author) moderates that list, and DMARC passed
or DKIM passed for a domain aligned with the author's (routemail.approvals).
"""

from __future__ import annotations

import base64
import binascii
import getpass
from collections.abc import Mapping
from dataclasses import dataclass

from routemail import tokens
from routemail.author import Author
from routemail.commandline import routemail_command
from routemail.config import Config, Moderation, Site
from routemail.lists import ResolvedList
from routemail.message import Headers
from routemail.notices import Notice
from routemail.spool import Spool

APPROVE_PREFIX = "approve+"
REJECT_PREFIX = "reject+"
PREFIXES = {APPROVE_PREFIX: "approve", REJECT_PREFIX: "reject"}


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
    return moderation_address(secret, msg_id, listname, site, "approve")


def moderation_address(secret: bytes, msg_id: str, listname: str, site: Site, action: str) -> str:
    """The address a moderator writes to to approve or reject msg_id on listname."""
    token = tokens.moderation_token(secret, msg_id, listname, action)
    return f"{action}+{_id_to_base32(msg_id)}-{token}@{site.domain}"


def parse_moderation_address(local_part: str) -> tuple[str, str, str] | None:
    """(approve or reject, held message id, token) from a moderation address's local part."""
    local = local_part.lower()
    prefix = next((p for p in PREFIXES if local.startswith(p)), None)
    if prefix is None:
        return None
    encoded, sep, token = local[len(prefix) :].partition("-")
    if not sep or len(token) != tokens.MODERATION_TOKEN_CHARS:
        return None
    msg_id = _base32_to_id(encoded)
    return (PREFIXES[prefix], msg_id, token) if msg_id else None


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
    reply = moderation_address(secret, held.msg_id, name, site, "approve")
    reject = moderation_address(secret, held.msg_id, name, site, "reject")
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
            f"To reject it, write to {reject}",
            "  the first line of your message is the reason sent to the author.",
            f"To discard it silently, do nothing: the hold expires after {held.hold_days:g} days.",
            "From a shell: " + routemail_command("approve", held.msg_id, name),
            "          or: "
            + routemail_command("reject", held.msg_id, name, options=("--reason", "WHY")),
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
    config: Config, spool: Spool, msg_id: str, listname: str, action: str, reason: str = ""
) -> str:
    """`routemail approve|reject`: the decision, made as shell:USER, the user running it."""
    from routemail import held

    who = f"shell:{getpass.getuser()}"
    decision = held.decide(config, spool, msg_id, listname, action, who, "shell", reason)
    return f"{msg_id}: {decision.state} for {decision.list} by {decision.by}"
