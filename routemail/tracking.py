"""What the mail system says became of a copy after it was sent, on the message's timeline.

SES events (Delivery, Bounce, Complaint, DeliveryDelay, Reject) name the copy by
the tags the ses transport put on it (the queue id) and by SES's MessageId; a
DSN by VERP names the recipient by its token (routemail.feedback) and the
message by the Message-ID of the copy it returns. Neither is believed alone: a
report is written only on a queue entry that exists and whose S line for that
recipient agrees (for SES, holding the same MessageId), so a tag naming
another message, an id with a path in it, or a report for a copy never sent
writes nothing. Each report has a ref (the SES feedback id, MessageId and
time; the DSN's own queue id): the same report arriving again is written once.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any

from routemail import addresses, identity, sidecar
from routemail.errors import UnknownMessage
from routemail.spool import QUEUE_ID, Spool

MAX_REF = 160
MAX_DETAIL = 300
MAX_RECIPIENTS = 50  # SES sends to at most 50 recipients a message; we send to one
DSN_READ_LIMIT = 64 * 1024
_REF_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+=-]", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

RECORDED = "recorded"
DUPLICATE = "recorded before"
# The entry is still being routed and has no S line for the recipient yet: SES
# answered between taking the copy and the line being written. Asked again later.
TOO_EARLY = "its copy is still being sent"


@dataclass(frozen=True)
class Report:
    """One thing the mail system said about one recipient's copy."""

    code: str  # sidecar.DELIVERED, BOUNCED, COMPLAINED, DELAYED or UNDELIVERABLE
    recipient: str
    ref: str
    detail: str
    when: dt.datetime
    relay_id: str | None = None  # the next hop's id the S line must hold; None: any

    def event(self) -> sidecar.Event:
        return sidecar.event(self.code, self.recipient, self.ref, self.detail, when=self.when)


def record(spool: Spool, msg_id: str, reports: Sequence[Report]) -> list[str]:
    """Write the reports on msg_id's timeline, under its lock; what became of each:
    recorded, recorded before, or why not (never raises for a bad or gone id)."""
    if not QUEUE_ID.fullmatch(msg_id):
        return [f"{msg_id[:40]!r} is not a queue id"] * len(reports)
    outcomes: list[str] = []

    def choose(text: str, pending: bool) -> list[sidecar.Event]:
        outcomes.clear()
        chosen = []
        seen = set()
        for report in reports:
            key = (report.code, addresses.key(report.recipient), report.ref)
            why = DUPLICATE if key in seen else _check(text, report, pending)
            outcomes.append(why or RECORDED)
            if why is None:
                seen.add(key)
                chosen.append(report.event())
        return chosen

    try:
        spool.append_checked(msg_id, choose)
    except UnknownMessage:
        return [f"no queue entry {msg_id} (removed, or never here)"] * len(reports)
    return outcomes


def _check(text: str, report: Report, pending: bool) -> str | None:
    """Why the report does not go on this sidecar, or None. Only the lines naming the
    recipient are parsed: a big list's sidecar has one S line per member."""
    lines = _lines_naming(text, report.recipient)
    events = sidecar.parse("".join(line + "\n" for line in lines))
    want = addresses.key(report.recipient)
    sent = [e for e in events if e.code == sidecar.SENT and addresses.key(e.fields[0]) == want]
    if not sent and pending:
        return TOO_EARLY
    if not sent:
        return f"no copy to {report.recipient} was sent"
    if report.relay_id is not None and not any(e.fields[1:2] == (report.relay_id,) for e in sent):
        return f"the copy to {report.recipient} was not sent as {report.relay_id}"
    if any(
        e.code == report.code
        and e.fields[1:2] == (report.ref,)
        and addresses.key(e.fields[0]) == want
        for e in events
    ):
        return DUPLICATE
    return None


def _lines_naming(text: str, recipient: str) -> list[str]:
    """The whole lines that mention the recipient (a torn last line is not whole). Each
    line is lowered on its own: lowering the whole text could move the offsets."""
    needle = f" {addresses.key(recipient)}"
    *whole, _torn = text.split("\n")
    return [line for line in whole if needle in line.lower()]


# -- SES events ------------------------------------------------------------


def ses_reports(event: Mapping[str, Any], now: dt.datetime) -> list[Report]:
    """The reports in an SES notification or event-publishing record (none for a
    kind that says nothing about delivery: Send, Open, Click...)."""
    kind = event.get("notificationType") or event.get("eventType")
    mail = _dict(event.get("mail"))
    ses_id = _text(mail.get("messageId"), MAX_REF)
    if not ses_id:
        return []
    if kind == "Delivery":
        body = _dict(event.get("delivery"))
        detail = _text(body.get("smtpResponse"), MAX_DETAIL) or "accepted"
        found = [(r, detail) for r in _strings(body.get("recipients"))]
        return _reports(sidecar.DELIVERED, found, f"ses:{ses_id}", body, now, ses_id)
    if kind == "Bounce":
        body = _dict(event.get("bounce"))
        head = f"{_text(body.get('bounceType'), 40)}/{_text(body.get('bounceSubType'), 40)}"
        found = _listed(body, "bouncedRecipients", head)
        ref = f"ses:{_text(body.get('feedbackId'), MAX_REF) or ses_id}"
        return _reports(sidecar.BOUNCED, found, ref, body, now, ses_id)
    if kind == "Complaint":
        body = _dict(event.get("complaint"))
        head = _text(body.get("complaintFeedbackType"), 60) or "complaint"
        found = _listed(body, "complainedRecipients", head)
        ref = f"ses:{_text(body.get('feedbackId'), MAX_REF) or ses_id}"
        return _reports(sidecar.COMPLAINED, found, ref, body, now, ses_id)
    if kind == "DeliveryDelay":
        body = _dict(event.get("deliveryDelay"))
        found = _listed(body, "delayedRecipients", _text(body.get("delayType"), 60) or "delayed")
        ref = f"ses:{ses_id}@{_text(body.get('timestamp'), 40)}"
        return _reports(sidecar.DELAYED, found, ref, body, now, ses_id)
    if kind == "Reject":
        body = _dict(event.get("reject"))
        detail = _text(body.get("reason"), MAX_DETAIL) or "rejected by SES"
        found = [(r, detail) for r in _strings(mail.get("destination"))]
        return _reports(sidecar.UNDELIVERABLE, found, f"ses:{ses_id}", mail, now, ses_id)
    return []


def _listed(body: Mapping[str, Any], key: str, head: str) -> list[tuple[str, str]]:
    """(address, detail) of each {"emailAddress", "diagnosticCode"} in body[key]."""
    return [
        (_text(r.get("emailAddress"), 320), _join(head, r.get("diagnosticCode")))
        for r in _dicts(body.get(key))
    ]


def _reports(
    code: str,
    found: Sequence[tuple[str, str]],
    ref: str,
    body: Mapping[str, Any],
    now: dt.datetime,
    ses_id: str,
) -> list[Report]:
    when = _event_time(body.get("timestamp"), now)
    out = []
    for raw, detail in found[:MAX_RECIPIENTS]:
        if recipient := addresses.normalize(raw):
            out.append(Report(code, recipient, _ref(ref), detail, when, ses_id))
    return out


def _ref(text: str) -> str:
    return _REF_UNSAFE.sub("_", text)[:MAX_REF]


def _event_time(value: Any, now: dt.datetime) -> dt.datetime:
    """The event's own time, to the second; now when it is missing, unreadable or ahead."""
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return now
    if when.tzinfo is None:
        return now
    return min(when.astimezone(dt.UTC).replace(microsecond=0), now)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [v[:320] for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _text(value: Any, limit: int) -> str:
    """A field for one line of a sidecar: text only, no control characters, capped."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return ""
    return " ".join(_CONTROL.sub(" ", str(value)[: limit * 4]).split())[:limit]


def _join(head: str, diagnostic: Any) -> str:
    extra = _text(diagnostic, MAX_DETAIL)
    return f"{head}: {extra}"[:MAX_DETAIL] if extra else head


# -- DSNs ------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedDsn:
    report: Report
    msg_id: str | None
    outcome: str

    @property
    def on_timeline(self) -> bool:
        return self.outcome in (RECORDED, DUPLICATE)


def record_dsn(spool: Spool, raw: bytes, recipient: str, permanent: bool, dsn_id: str) -> PlacedDsn:
    """Put a DSN's bounce on the timeline of the message it returns, if that message
    sent recipient a copy."""
    report = dsn_report(raw, recipient, permanent, dsn_id, sidecar.now())
    msg_id = returned_queue_id(raw)
    if msg_id is None:
        return PlacedDsn(report, None, "it returns no Message-ID")
    return PlacedDsn(report, msg_id, record(spool, msg_id, [report])[0])


def dsn_report(
    raw: bytes, recipient: str, permanent: bool, dsn_id: str, now: dt.datetime
) -> Report:
    """The report a DSN makes about recipient's copy (the recipient comes from the
    VERP token, never from what the DSN claims)."""
    status = _dsn_status(raw)
    detail = ("Permanent" if permanent else "Transient") + (f": {status}" if status else "")
    return Report(sidecar.BOUNCED, recipient, f"dsn:{dsn_id}", detail, now)


def returned_queue_id(raw: bytes) -> str | None:
    """The queue id of the message a DSN returns: from the Message-ID of the returned
    copy (message/rfc822 or text/rfc822-headers), which copies keep from the post."""
    try:
        msg = email.message_from_bytes(raw[:DSN_READ_LIMIT], policy=email.policy.compat32)
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype == "message/rfc822":
                inner = part.get_payload()
                first = inner[0] if isinstance(inner, list) and inner else None
                head = first.as_bytes() if isinstance(first, Message) else b""
            elif ctype == "text/rfc822-headers":
                payload = part.get_payload(decode=True)
                head = payload if isinstance(payload, bytes) else b""
            else:
                continue
            if value := identity.message_id_header(head):
                return identity.spool_id(value, b"")
    except Exception:  # a broken DSN names no message
        return None
    return None


def _dsn_status(raw: bytes) -> str:
    """Status and Diagnostic-Code of the first recipient a DSN reports, as one line."""
    try:
        msg = email.message_from_bytes(raw[:DSN_READ_LIMIT], policy=email.policy.compat32)
        for part in msg.walk():
            if part.get_content_type() != "message/delivery-status":
                continue
            blocks = part.get_payload()
            for block in blocks[1:] if isinstance(blocks, list) else []:
                if not isinstance(block, Message):
                    continue
                status = _text(block.get("Status"), 20)
                diagnostic = _text(block.get("Diagnostic-Code"), MAX_DETAIL)
                return " ".join(x for x in (status, diagnostic) if x)[:MAX_DETAIL]
    except Exception:  # a broken DSN: no detail
        return ""
    return ""
