"""A moderator's reply to a moderation request: whether it decides, and why not.

A reply to approve+… approves, mail to reject+… rejects (the first line of
its text is the reason the author is told). Either counts only when the token
in its address verifies for a list the message is held for, it is not an
automatic reply, its author (routemail.author) moderates that list, and SES
vouches for the author's domain (routemail.alignment). The decision itself is
routemail.held's, as from the API or the shell. A refusal whose token verified
is told to the moderators: the reply came from someone who received the request.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from routemail import addresses, alignment, held, moderate, sidecar, tokens
from routemail.actionlog import ActionLog
from routemail.config import Config, Site
from routemail.delivery import Work
from routemail.errors import UnknownMessage
from routemail.lists import Directory, ResolvedList, ResolverError
from routemail.message import Headers
from routemail.notices import Notice
from routemail.spool import Spool
from routemail.transports import Result


@dataclass(frozen=True)
class Reply:
    """What a moderation address asks: approve or reject held_id, with this token."""

    action: str
    held_id: str
    token: str

    @property
    def verb(self) -> str:
        return "approval" if self.action == held.APPROVE else "rejection"


@dataclass(frozen=True)
class Refusal:
    """Why a reply decides nothing, and (once its token verified) for which list."""

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


class Router(Protocol):
    """What handling a reply needs of routemail.route.Router."""

    config: Config
    spool: Spool
    log: ActionLog
    directory: Directory
    secret: bytes

    def process(self, msg_id: str) -> str | None: ...
    def discard(self, work: Work, destination: str, why: str) -> None: ...
    def send_notice(self, work: Work, to: str, data: bytes, listname: str, what: str) -> Result: ...


def handle(router: Router, work: Work, destination: str, reply: Reply) -> bool:
    """Decide as the reply (work) asks, or discard it and tell the moderators why;
    False when the list cannot be resolved right now (retry later)."""
    verdicts = work.history.verdicts
    try:
        verdict = consider(router, work.headers, verdicts, work.raw, reply)
    except ResolverError as exc:
        what = f"{reply.verb} of {reply.held_id}: cannot resolve the list ({exc})"
        router.log.write(work.msg_id, what)
        return False
    refusal = (
        _decide(router, work, destination, reply, *verdict)
        if isinstance(verdict, tuple)
        else verdict
    )
    if refusal is not None:
        why = f"invalid {reply.verb} for {reply.held_id}: {refusal.reason}"
        router.discard(work, destination, why)
        if refusal.tell:
            _tell_refused(router, work, reply, refusal)
    return True


def _decide(
    router: Router, work: Work, destination: str, reply: Reply, listname: str, moderator: str
) -> Refusal | None:
    """Make the decision; why not when another came first (None when it is made)."""
    reason = first_line(work.raw) if reply.action == held.REJECT else ""
    try:
        held.decide(
            router.config,
            router.spool,
            reply.held_id,
            listname,
            reply.action,
            moderator,
            "mail",
            reason,
            log=router.log,
        )
    except (held.AlreadyDecided, held.NotHeld) as exc:
        return Refusal(str(exc), listname, _moderators(router, listname))
    accepted = f"{reply.verb} of {reply.held_id} for {listname} accepted"
    router.discard(work, destination, accepted)
    router.process(reply.held_id)  # deliver it, or tell its author, in this run
    return None


def consider(
    router: Router, headers: Headers, verdicts: Mapping[str, str], raw: bytes, reply: Reply
) -> tuple[str, str] | Refusal:
    """(list, moderator) for a reply that decides, else why it does not."""
    try:
        history = router.spool.history(held.check_id(reply.held_id))
    except (UnknownMessage, held.NotHeld):
        return Refusal(f"no queue entry {reply.held_id}")
    listname = held_list(history, reply, router.secret)
    if listname is None:
        return Refusal("the token does not verify")
    if headers.automatic:
        return Refusal("an automatic reply (Auto-Submitted or Precedence) never decides")
    mlist = router.directory.resolve(listname)
    judged = judge(headers, verdicts, raw, history, reply.held_id, listname, mlist)
    return judged if isinstance(judged, Refusal) else (listname, judged)


def held_list(history: sidecar.History, reply: Reply, secret: bytes) -> str | None:
    """The list the reply's token names among those the message was held for."""
    return next(
        (
            name
            for name in sorted(history.lists_with(sidecar.MODERATION))
            if tokens.matches(
                tokens.moderation_token(secret, reply.held_id, name, reply.action), reply.token
            )
        ),
        None,
    )


def judge(
    reply: Headers,
    verdicts: Mapping[str, str],
    raw: bytes,
    history: sidecar.History,
    held_id: str,
    listname: str,
    mlist: ResolvedList | None,
) -> str | Refusal:
    """The moderator's address when the reply may decide on held_id for listname,
    else why not."""
    moderators = list(mlist.moderators) if mlist else []
    if decision := held.decision_of(history, held_id, listname):
        return Refusal(f"{held_id} was {decision.summary}", listname, moderators)
    moderator = reply.author.address
    if moderator is None or mlist is None or not mlist.is_moderator(moderator):
        who = moderator or f"the sender (unknown: {reply.author.problem})"
        return Refusal(f"{who} is not a moderator of {listname}", listname, moderators)
    if why := alignment.unvouched(verdicts, raw, reply.author):
        return Refusal(f"the reply is not vouched for: {why}", listname, moderators)
    return moderator


def first_line(raw: bytes) -> str:
    """The rejection reason: the first line of the reply's own text (quoted lines and
    an "On … wrote:" line are the request, not the reason); "" when it has none."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    try:
        part = msg.get_body(("plain",))
        text = str(part.get_content()) if part is not None else ""
    except (LookupError, ValueError, TypeError):
        return ""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith(">") or line.endswith("wrote:"):
            return ""
        return line[: held.MAX_REASON]
    return ""


def _moderators(router: Router, listname: str) -> list[str]:
    try:
        mlist = router.directory.resolve(listname)
    except ResolverError:
        return []
    return list(mlist.moderators) if mlist else []


def _tell_refused(router: Router, work: Work, reply: Reply, refusal: Refusal) -> None:
    """A notice saying why, once: the reply is discarded after it."""
    site, headers = router.config.site, work.headers
    to = refusal.notice_to(headers.author.address, site.admin)
    notice = refusal_notice(refusal.listname, reply, refusal.reason, work.raw, headers, site, to)
    for moderator in to:
        what = f"refused-{reply.verb} notice"
        result = router.send_notice(work, moderator, notice, refusal.listname, what)
        outcome = "sent" if result.sent else f"not sent ({result.detail})"
        router.log.write(work.msg_id, f"refused {reply.verb}: notice to {moderator} {outcome}")


def refusal_notice(
    listname: str,
    reply: Reply,
    reason: str,
    raw: bytes,
    headers: Headers,
    site: Site,
    to: list[str],
) -> bytes:
    """The notice telling a moderator why their approval or rejection did not count."""
    verb = "approving" if reply.action == held.APPROVE else "rejecting"
    text = "\n".join(
        [
            f"A reply {verb} a message held for {listname}@{site.domain} did not count:",
            f"  {reason}",
            "",
            f"From:    {moderate.shown(headers.author)}",
            f"Subject: {headers.subject or '(none)'}",
            "",
            "Nothing changed. Reply to the moderation request again from the address"
            " routemail knows you by, through a mail service that signs your mail"
            f" (DKIM) and publishes DMARC, or decide from a shell with `routemail {reply.action}`.",
            "",
            "The headers of the reply are attached.",
        ]
    )
    what = "Approval" if reply.action == held.APPROVE else "Rejection"
    return Notice(
        from_addr=f"{listname}-owner@{site.domain}",
        from_name=f"{listname} moderation",
        to=to,
        subject=f"{what} not accepted for {listname}: {headers.subject or '(no subject)'}",
        text=text,
        original=raw,
        headers_only=True,
        domain=site.domain,
    ).as_bytes()
