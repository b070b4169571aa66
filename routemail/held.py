"""Held messages: what waits for a moderator on a list, and deciding on it.

Every way of moderating (the API, the web pages, a reply by mail, the shell)
comes here, so a decision is the same whichever way it is made: one sidecar
line and one log line naming the moderator and how, written under the
sidecar's lock after a look at the history, so the first decision wins and a
second one learns what the first was (AlreadyDecided).

- approve: an A line and the needs-processing bit; the next run delivers it
  exactly as after a moderator's reply (docs/routing.md).
- reject: a J line with the reason, and the bit: the next run tells the
  author why (routemail.authornotices).
- discard: an N line; nobody is told.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from routemail import addresses, sidecar, webhooks
from routemail.actionlog import ActionLog
from routemail.config import Config
from routemail.errors import RoutemailError, UnknownMessage
from routemail.lists import ResolvedList
from routemail.message import Headers
from routemail.spool import QUEUE_ID, Spool

APPROVE, REJECT, DISCARD = "approve", "reject", "discard"
ACTIONS = {APPROVE: sidecar.APPROVED, REJECT: sidecar.REJECTED, DISCARD: sidecar.DROPPED}
STATES = {
    sidecar.APPROVED: "approved",
    sidecar.REJECTED: "rejected",
    sidecar.DROPPED: "discarded",
    sidecar.EXPIRED: "expired",
}
HOWS = ("web", "api", "mail", "shell")
MAX_REASON = 1000  # characters of a rejection reason, which goes to the author
HEADER_BYTES = 256 * 1024  # enough of the message file for its header fields


class NotHeld(RoutemailError):
    """The id names no message held for that list (no such entry, another list's,
    or one never held there)."""


class AlreadyDecided(RoutemailError):
    """A moderator decided before: what, by whom and when."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.id} was {decision.summary}")
        self.decision = decision


@dataclass(frozen=True)
class HeldMessage:
    """One message waiting for a moderator on one list."""

    id: str
    list: str
    sender: str  # the From address, or why there is none
    subject: str
    received: dt.datetime
    reason: str
    expires: dt.datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "subject": self.subject,
            "received": sidecar.format_time(self.received),
            "reason": self.reason,
            "expires": sidecar.format_time(self.expires),
        }


@dataclass(frozen=True)
class Decision:
    """What became of a hold: approved, rejected, discarded or expired."""

    id: str
    list: str
    state: str
    by: str  # the moderator ("" for an expiry)
    how: str  # web, api, mail or shell ("" for an expiry)
    at: dt.datetime
    reason: str = ""  # a rejection's reason

    @property
    def summary(self) -> str:
        when = sidecar.format_time(self.at)
        if not self.by:
            return f"{self.state} for {self.list} at {when}"
        return f"{self.state} for {self.list} by {self.by} ({self.how}) at {when}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "list": self.list,
            "state": self.state,
            "by": self.by or None,
            "how": self.how or None,
            "at": sidecar.format_time(self.at),
            "reason": self.reason or None,
        }


def may_moderate(config: Config, administrator: str | None, mlist: ResolvedList, who: str) -> bool:
    """Whether who decides on mail held for mlist: one of its moderators, or the
    administrator of a list in lists.toml (administrator: State.list_administrator's)."""
    admin = administrator if mlist.name in config.lists else None
    return mlist.is_moderator(who) or addresses.same(admin or "", who)


def check_id(msg_id: str) -> str:
    """A queue id as the spool writes them; anything else (a path, a prefix) is refused
    before it comes near a file name."""
    if not isinstance(msg_id, str) or not QUEUE_ID.fullmatch(msg_id):
        raise NotHeld(f"{str(msg_id)[:40]!r} is not a queue id (22 characters of A-Z a-z 0-9 _ -)")
    return msg_id


def decision_of(history: sidecar.History, msg_id: str, listname: str) -> Decision | None:
    """The decision that settled the hold on listname, if one did."""
    line = history.decision(listname)
    if line is None or line.time is None:
        return None
    f = line.fields
    if line.code == sidecar.EXPIRED:
        return Decision(msg_id, f[0].lower(), STATES[line.code], "", "", line.time)
    reason = " ".join(f[3:]) if line.code == sidecar.REJECTED else ""
    by = f[1] if len(f) > 1 else "?"
    how = sidecar.decision_how(f)
    return Decision(msg_id, f[0].lower(), STATES[line.code], by, how, line.time, reason)


def held_on(config: Config, spool: Spool, listname: str | None = None) -> list[HeldMessage]:
    """The messages held for listname (every list when None), oldest first."""
    found = []
    for msg_id in spool.ids():
        try:
            history = spool.history(msg_id)
        except UnknownMessage:
            continue  # removed since the scan
        lists = history.held_lists
        if listname is not None:
            lists &= {listname.lower()}
        if lists:
            headers = _headers(spool, msg_id)
            found += [_held(config, msg_id, history, headers, name) for name in sorted(lists)]
    return found


def find(config: Config, spool: Spool, msg_id: str, listname: str) -> HeldMessage:
    """The message held for listname; NotHeld, or AlreadyDecided once it is not."""
    history = _history(spool, check_id(msg_id), listname)
    return _held(config, msg_id, history, _headers(spool, msg_id), listname.lower())


def _history(spool: Spool, msg_id: str, listname: str) -> sidecar.History:
    """The history of a message that is or was held for listname."""
    try:
        history = spool.history(msg_id)
    except UnknownMessage:
        raise NotHeld(f"no message {msg_id} is held for {listname}") from None
    return _still_held(history, msg_id, listname)


def _still_held(history: sidecar.History, msg_id: str, listname: str) -> sidecar.History:
    name = listname.lower()
    if name in history.held_lists:
        return history
    decision = decision_of(history, msg_id, name)
    if decision is not None:
        raise AlreadyDecided(decision)
    raise NotHeld(f"no message {msg_id} is held for {listname}")


def _headers(spool: Spool, msg_id: str) -> Headers:
    try:
        with spool.message_path(msg_id).open("rb") as f:
            return Headers.of(f.read(HEADER_BYTES))
    except FileNotFoundError:
        raise NotHeld(f"the message file of {msg_id} is missing") from None


def _held(
    config: Config, msg_id: str, history: sidecar.History, headers: Headers, listname: str
) -> HeldMessage:
    received = history.received_at or sidecar.now()
    # Retention expires a hold when its sidecar has been still for hold_days.
    last = history.last_activity or received
    return HeldMessage(
        id=msg_id,
        list=listname,
        sender=headers.author.address or f"unknown ({headers.author.problem})",
        subject=headers.subject,
        received=received,
        reason=history.hold_reason(listname) or "not recorded (held by an older version)",
        expires=last + dt.timedelta(days=config.moderation.hold_days),
    )


def decide(
    config: Config,
    spool: Spool,
    msg_id: str,
    listname: str,
    action: str,
    by: str,
    how: str,
    reason: str = "",
    log: ActionLog | None = None,
) -> Decision:
    """Approve, reject or discard the message held for listname, as moderator `by`
    deciding through `how`; the decision made. NotHeld or AlreadyDecided when there
    is nothing to decide."""
    listname = listname.lower()
    code, fields = _line(action, by, how, reason)

    def choose(history: sidecar.History) -> Sequence[sidecar.Event]:
        _still_held(history, msg_id, listname)
        return [sidecar.event(code, listname, *fields)]

    try:
        [line] = spool.append_after(
            check_id(msg_id), choose, pending=True if code != sidecar.DROPPED else None
        )
    except UnknownMessage:
        raise NotHeld(f"no message {msg_id} is held for {listname}") from None
    assert line.time is not None
    decision = Decision(msg_id, listname, STATES[code], by, how, line.time, " ".join(fields[2:]))
    _record(config, spool, decision, log)
    return decision


def _line(action: str, by: str, how: str, reason: str) -> tuple[str, list[str]]:
    if action not in ACTIONS:
        raise RoutemailError(f"{action!r} is not a decision: use {', '.join(ACTIONS)}")
    if how not in HOWS:
        raise RoutemailError(f"{how!r} is not a way of moderating: one of {', '.join(HOWS)}")
    who = "".join(_printable(by).split())
    if not who:
        raise RoutemailError("a decision names the moderator who made it")
    if action != REJECT and reason:
        raise RoutemailError("only a rejection carries a reason (it goes to the author)")
    if len(reason) > MAX_REASON:
        raise RoutemailError(f"the reason is longer than {MAX_REASON} characters")
    text = " ".join(_printable(reason).split())
    return ACTIONS[action], [who, how, *([text] if text else [])]


def _printable(text: str) -> str:
    """text with line breaks and control characters made spaces: a decision is one line."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _record(config: Config, spool: Spool, decision: Decision, log: ActionLog | None) -> None:
    text = f"{decision.list}: {decision.state} by {decision.by} ({decision.how})"
    if decision.reason:
        text += f": {decision.reason}"
    own = log is None
    log = log or ActionLog(spool.root / "log")
    try:
        log.write(decision.id, text)
    finally:
        if own:
            log.close()
    if decision.state in ("approved", "rejected"):
        hooks = webhooks.Outbox(spool.root.parent, config.webhooks)
        hooks.decision(decision.state, spool, decision.id, decision.list, decision.by, decision.how)
        hooks.flush()
