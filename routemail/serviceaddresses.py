"""Mail to a list's service addresses, which is never a post:

    <list>-bounces+<token>@  a delivery status notification; the VERP token names
                             the recipient whose copy bounced, and the bounce is
                             scored for them and put on that copy's timeline
    <list>-unsubscribe@      the author asks to leave the list (after the same
                             verdict checks a post gets)

Either way the destination ends in one D line saying what was done.
"""

from __future__ import annotations

from typing import Protocol

from routemail import feedback, moderate, tokens, tracking
from routemail.actionlog import ActionLog
from routemail.config import Config
from routemail.delivery import Work
from routemail.errors import RoutemailError
from routemail.lists import Directory, ResolverError
from routemail.spool import Spool


class Router(Protocol):
    """What handling service mail needs of routemail.route.Router."""

    config: Config
    spool: Spool
    log: ActionLog
    directory: Directory
    secret: bytes

    @property
    def feedback(self) -> feedback.Feedback: ...
    def discard(self, work: Work, destination: str, why: str) -> None: ...


def bounce(router: Router, work: Work, destination: str, listname: str, token: str) -> None:
    """A bounce to <list>-bounces+<token>: attribute it to the recipient the token names."""
    temporary, permanent = feedback.dsn_failures(work.raw)
    if not (temporary or permanent):
        why = f"mail to {listname}-bounces is not a delivery status notification"
        router.discard(work, destination, why)
        return
    try:
        mlist = router.directory.resolve(listname) if token else None
    except ResolverError as exc:
        router.log.write(work.msg_id, f"bounce for {listname}: cannot resolve ({exc}); will retry")
        work.retry = True
        return
    recipient = next(
        (
            r
            for r in (mlist.recipients if mlist else ())
            if tokens.matches(feedback.verp_token(router.secret, listname, r), token)
        ),
        None,
    )
    if recipient is None:
        why = f"bounce for {listname} without a valid VERP token: ignored"
        router.discard(work, destination, why)
        return
    placed = tracking.record_dsn(router.spool, work.raw, recipient, bool(permanent), work.msg_id)
    on = placed.msg_id if placed.on_timeline else None
    action = router.feedback.bounce(
        recipient,
        bool(permanent),
        listname,
        f"dsn:{work.msg_id}",
        "DSN",
        on,
        placed.report.detail,
    )
    where = f"on the timeline of {on}" if on else f"on no timeline: {placed.outcome}"
    router.discard(work, destination, f"bounce for {recipient} on {listname}: {action}; {where}")


def unsubscribe(router: Router, work: Work, destination: str, listname: str) -> None:
    """<list>-unsubscribe@: unsubscribe the sender after the usual inbound checks."""
    author = work.headers.author.address
    reasons = moderate.verdict_reasons(work.history.verdicts, router.config.moderation)
    if author is None:
        reasons.append(f"the author is unknown: {work.headers.author.problem}")
    if author is None or reasons:
        why = "; ".join(reasons)
        router.discard(work, destination, f"unsubscribe request for {listname} refused: {why}")
        return
    try:
        removed = router.feedback.unsubscribe(author, listname, f"mailto:{work.msg_id}")
    except RoutemailError as exc:
        router.discard(work, destination, f"unsubscribe request refused: {exc}")
        return
    router.discard(
        work,
        destination,
        f"unsubscribed {author} from {listname}"
        if removed
        else f"unsubscribe request: {author} is not a member of {listname}",
    )
