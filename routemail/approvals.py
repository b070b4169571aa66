"""A moderator's reply to a moderation request: whether it approves, and why not.

The reply counts only when the token in its address verifies for a list the
message is held for, it is not an automatic reply, its author
(routemail.author) moderates that list, and SES vouches for the author's
domain (routemail.alignment). A refusal whose token verified is told to the
moderators: the reply came from someone who received the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from routemail import addresses, alignment, moderate, sidecar, tokens
from routemail.config import Site
from routemail.lists import ResolvedList
from routemail.message import Headers
from routemail.notices import Notice


@dataclass(frozen=True)
class Refusal:
    """Why a reply is not an approval, and (once its token verified) for which list."""

    reason: str
    listname: str = ""
    moderators: Sequence[str] = ()

    @property
    def tell(self) -> bool:
        """Whether the moderators hear of it: never before the token verified, and
        never for an automatic reply (a notice to an auto-responder could loop)."""
        return bool(self.listname)

    def notice_to(self, author: str | None, admin: str) -> list[str]:
        """The moderator who replied, or the list's moderators when the reply's author
        is none of them (the admin when the list has none)."""
        replied = [m for m in self.moderators if author and addresses.same(m, author)]
        if replied:
            return replied[:1]
        return list(self.moderators) or [admin]


def held_list(held: sidecar.History, held_id: str, token: str, secret: bytes) -> str | None:
    """The list a token approves the held message for, if it verifies for one."""
    return next(
        (
            name
            for name in sorted(held.lists_with(sidecar.MODERATION))
            if tokens.matches(tokens.moderation_token(secret, held_id, name), token)
        ),
        None,
    )


def judge(
    reply: Headers,
    verdicts: Mapping[str, str],
    raw: bytes,
    held: sidecar.History,
    held_id: str,
    listname: str,
    mlist: ResolvedList | None,
) -> str | Refusal:
    """The approver's address when the reply approves held_id for listname, else why not."""
    moderators = list(mlist.moderators) if mlist else []
    if (
        held.approver(listname)
        or held.has(sidecar.REJECTED, listname)
        or held.has(sidecar.EXPIRED, listname)
    ):
        return Refusal(f"{held_id} is no longer held for {listname}", listname, moderators)
    approver = reply.author.address
    if approver is None or mlist is None or not mlist.is_moderator(approver):
        who = approver or f"the sender (unknown: {reply.author.problem})"
        return Refusal(f"{who} is not a moderator of {listname}", listname, moderators)
    if why := alignment.unvouched(verdicts, raw, reply.author):
        return Refusal(f"the reply is not vouched for: {why}", listname, moderators)
    return approver


def refusal_notice(
    listname: str, reason: str, reply: bytes, headers: Headers, site: Site, to: list[str]
) -> bytes:
    """The notice telling a moderator why their approval reply did not count."""
    text = "\n".join(
        [
            f"A reply approving a message held for {listname}@{site.domain} did not count:",
            f"  {reason}",
            "",
            f"From:    {moderate.shown(headers.author)}",
            f"Subject: {headers.subject or '(none)'}",
            "",
            "Nothing changed. Reply to the moderation request again from the address"
            " routemail knows you by, through a mail service that signs your mail"
            " (DKIM) and publishes DMARC, or approve from a shell with `routemail approve`.",
            "",
            "The headers of the reply are attached.",
        ]
    )
    return Notice(
        from_addr=f"{listname}-owner@{site.domain}",
        from_name=f"{listname} moderation",
        to=to,
        subject=f"Approval not accepted for {listname}: {headers.subject or '(no subject)'}",
        text=text,
        original=reply,
        headers_only=True,
        domain=site.domain,
    ).as_bytes()
