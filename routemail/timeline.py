"""A message's timeline: what its sidecar says happened to it, per list and per recipient.

`routemail show` prints it and `GET /api/v1/messages/{id}` returns it as JSON
(`Timeline.as_json`); docs/api.md describes the fields. Only lines about the
message's own copies count as recipients: notices that were not sent (a
moderation request, a forward to the admin) and destinations dropped as
machine-made are not recipients.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from routemail import addresses, sidecar
from routemail.delivery import COUNTED_FAILURE, OUTGOING, TRANSPORT_DOWN
from routemail.errors import UnknownMessage
from routemail.message import Headers
from routemail.spool import QUEUE_ID, Spool

SUPPRESSED_PREFIX = "suppressed:"
# G lines routemail.approvals writes for a notice to a moderator, not for a copy of the message.
REFUSAL_NOTICES = ("refused-approval notice", "refused-rejection notice")

# A recipient's status: the first of these its lines show.
QUEUED = "queued"
SENT = "sent"
DEFERRED = "deferred"
DELAYED = "delayed"
GAVE_UP = "gave_up"
SUPPRESSED = "suppressed"
DELIVERED = "delivered"
BOUNCED = "bounced"
COMPLAINED = "complained"


def _time(when: dt.datetime | None) -> str | None:
    return sidecar.format_time(when) if when else None


def _rest(e: sidecar.Event, start: int = 1) -> str:
    return " ".join(e.fields[start:])


@dataclass
class Step:
    """One thing that happened, with its time and what was said about it."""

    at: dt.datetime | None
    detail: str = ""
    by: str | None = None  # who decided (an approval, a rejection)
    ref: str | None = None  # which report said so (SES feedback id, DSN)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": _time(self.at), "detail": self.detail}
        if self.by is not None:
            out["by"] = self.by
        if self.ref is not None:
            out["ref"] = self.ref
        return out


@dataclass
class Recipient:
    address: str
    queued: dt.datetime | None = None
    sent: Step | None = None
    attempts: int = 0
    last_error: Step | None = None
    gave_up: Step | None = None
    suppressed: Step | None = None
    delivered: Step | None = None
    delayed: Step | None = None
    bounced: Step | None = None
    complained: Step | None = None

    def current(self) -> tuple[str, Step | None]:
        """The status and the step that gives it: the most telling step there is."""
        for name, step in (
            (COMPLAINED, self.complained),
            (BOUNCED, self.bounced),
            (DELIVERED, self.delivered),
            (GAVE_UP, self.gave_up),
            (SUPPRESSED, self.suppressed),
            (DELAYED, self.delayed),
            (SENT, self.sent),
            (DEFERRED, self.last_error),
        ):
            if step is not None:
                return name, step
        return QUEUED, None

    @property
    def status(self) -> str:
        return self.current()[0]

    def as_json(self) -> dict[str, Any]:
        def step(s: Step | None) -> dict[str, Any] | None:
            return s.as_json() if s else None

        return {
            "address": self.address,
            "status": self.status,
            "queued": _time(self.queued),
            "sent": step(self.sent),
            "deferred": {
                "attempts": self.attempts,
                "last_error": self.last_error.detail,
                "at": _time(self.last_error.at),
            }
            if self.last_error
            else None,
            "gave_up": step(self.gave_up),
            "suppressed": step(self.suppressed),
            "delayed": step(self.delayed),
            "delivered": step(self.delivered),
            "bounced": step(self.bounced),
            "complained": step(self.complained),
        }


@dataclass
class ListState:
    """What happened on one of the message's lists."""

    name: str
    held: Step | None = None
    approved: Step | None = None
    rejected: Step | None = None
    discarded: Step | None = None  # by a moderator, silently
    expired: Step | None = None
    finished: Step | None = None

    @property
    def status(self) -> str:
        for name, step in (
            ("finished", self.finished),
            ("rejected", self.rejected),
            ("discarded", self.discarded),
            ("expired", self.expired),
            ("approved", self.approved),
            ("held", self.held),
        ):
            if step is not None:
                return name
        return "pending"

    def as_json(self) -> dict[str, Any]:
        def step(s: Step | None) -> dict[str, Any] | None:
            return s.as_json() if s else None

        return {
            "list": self.name,
            "status": self.status,
            "held": step(self.held),
            "approved": step(self.approved),
            "rejected": step(self.rejected),
            "discarded": step(self.discarded),
            "expired": step(self.expired),
            "finished": step(self.finished),
        }


@dataclass
class Timeline:
    """Everything a sidecar says, grouped for people and programs."""

    id: str
    state: str
    headers: dict[str, str | None]
    received: list[Step] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)
    transactional: bool = False
    lists: dict[str, ListState] = field(default_factory=dict)
    forwarded: list[tuple[dt.datetime | None, str]] = field(default_factory=list)
    discarded: list[tuple[dt.datetime | None, str, str]] = field(default_factory=list)
    admin: str | None = None
    recipients: dict[str, Recipient] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "message_id": self.headers.get("message_id"),
            "from": self.headers.get("from"),
            "subject": self.headers.get("subject"),
            "transactional": self.transactional,
            "received": {
                "at": _time(self.received[0].at) if self.received else None,
                "destinations": self.destinations,
                "verdicts": self.verdicts,
                "receipts": len(self.received),
            },
            "lists": [s.as_json() for s in self.lists.values()],
            "forwarded": [
                {"at": _time(at), "destination": d, "to": self.admin} for at, d in self.forwarded
            ],
            "discarded": [
                {"at": _time(at), "destination": d, "reason": why} for at, d, why in self.discarded
            ],
            "recipients": [r.as_json() for r in self.recipients.values()],
        }


def of(spool: Spool, msg_id: str, admin: str | None = None) -> Timeline:
    """The timeline of a queue entry; UnknownMessage for an id that names none."""
    if not QUEUE_ID.fullmatch(msg_id):
        raise UnknownMessage(f"no queue entry {msg_id[:40]!r}: see `routemail queue`")
    history = spool.history(msg_id)
    try:
        head = spool.read_message(msg_id)[: 1 << 20]
    except UnknownMessage:
        head = b""
    h = Headers.of(head)
    state = sidecar.summary_state(history, spool.is_pending(msg_id))
    timeline = Timeline(
        msg_id,
        state,
        {"message_id": h.message_id, "from": h.author.address, "subject": h.subject},
        destinations=history.destinations,
        verdicts=history.verdicts,
        transactional=bool(history.outgoing),
        admin=admin,
    )
    for e in history.events:
        _apply(timeline, e)
    return timeline


def _apply(t: Timeline, e: sidecar.Event) -> None:
    f = e.fields
    if not f:
        return
    code = e.code
    if code == sidecar.RECEIVED:
        t.received.append(Step(e.time, " ".join(f)))
    elif code == sidecar.OUTGOING:
        for address in f:
            _recipient(t, address).queued = e.time
    elif code in _LIST_STEPS:
        name = f[0].lower()
        if name == OUTGOING and code == sidecar.LIST_SENT:
            return  # transactional mail: its recipients say it all
        state = t.lists.setdefault(name, ListState(name))
        if code == sidecar.MODERATION:  # M list [reason...]: nobody decided yet
            step = Step(e.time, _rest(e, 1), None)
        else:  # A, J, N: list by [how [reason...]]
            step = Step(e.time, _rest(e, 2), f[1] if len(f) > 1 else None)
        setattr(state, _LIST_STEPS[code], step)
    elif code == sidecar.UNKNOWN:
        t.forwarded.append((e.time, f[0]))
    elif code == sidecar.DISCARDED:
        t.discarded.append((e.time, f[0], _rest(e)))
    else:
        _recipient_line(t, e)


_LIST_STEPS = {
    sidecar.MODERATION: "held",
    sidecar.APPROVED: "approved",
    sidecar.REJECTED: "rejected",
    sidecar.DROPPED: "discarded",
    sidecar.EXPIRED: "expired",
    sidecar.LIST_SENT: "finished",
}
_REPORT_STEPS = {
    sidecar.DELIVERED: "delivered",
    sidecar.BOUNCED: "bounced",
    sidecar.COMPLAINED: "complained",
    sidecar.DELAYED: "delayed",
    sidecar.UNDELIVERABLE: "gave_up",
}


def _recipient_line(t: Timeline, e: sidecar.Event) -> None:
    """S, F, G, K and the reports: only those about the message's own copies."""
    f, code = e.fields, e.code
    detail = _rest(e)
    if code == sidecar.SENT:
        _recipient(t, f[0]).sent = Step(e.time, detail)
    elif code == sidecar.FAILED and detail.startswith((COUNTED_FAILURE, TRANSPORT_DOWN)):
        r = _recipient(t, f[0])
        r.attempts += detail.startswith(COUNTED_FAILURE)
        r.last_error = Step(e.time, detail)
    elif code == sidecar.GAVE_UP and not detail.startswith(REFUSAL_NOTICES):
        _recipient(t, f[0]).gave_up = Step(e.time, detail)
    elif code == sidecar.SKIPPED and detail.startswith(SUPPRESSED_PREFIX):
        reason = detail.removeprefix(SUPPRESSED_PREFIX).strip()
        _recipient(t, f[0]).suppressed = Step(e.time, reason)
    elif code in _REPORT_STEPS and len(f) >= 2:
        setattr(_recipient(t, f[0]), _REPORT_STEPS[code], Step(e.time, _rest(e, 2), ref=f[1]))


def _recipient(t: Timeline, address: str) -> Recipient:
    key = addresses.key(address)
    if key not in t.recipients:
        t.recipients[key] = Recipient(address)
    return t.recipients[key]
