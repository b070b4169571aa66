"""Feedback from the mail system: SES bounce and complaint events, DSNs, unsubscribes.

Each turns into suppression changes (routemail.suppression), membership
changes in lists.toml (routemail.listedit), webhook events, and, when a
transient-bounce score disables an address, a note to the list's moderators.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routemail import addresses, listedit, owners, sestags, sidecar, tracking
from routemail.config import Config
from routemail.errors import RoutemailError
from routemail.notify import send as send_notice
from routemail.spool import Spool
from routemail.state import State
from routemail.suppression import ALL_LISTS, Suppression
from routemail.webhooks import Outbox as Webhooks

BOUNCES_SUFFIX = "-bounces"
UNSUBSCRIBE_SUFFIX = "-unsubscribe"
OUTGOING = "outgoing"  # the list tag of transactional mail (routemail.delivery)
VERP_TOKEN_CHARS = 10  # 50 bits: with the list's member set it names one recipient
# flufl.bounce runs some fifty pattern sets over every body line, about 30 s a MB of
# short lines; what it needs (the explanation and the delivery-status part) comes first
# in every bounce format, so only this much of a bounce is read. The returned original
# after it is not needed.
DSN_READ_LIMIT = 64 * 1024


def verp_token(secret: bytes, listname: str, recipient: str) -> str:
    # Not hmac.digest(): it lets go of the GIL for every call, and in a fan-out the
    # router's thread then waits for a sender thread to give it back (300 us a copy).
    digest = hmac.new(secret, f"verp\n{listname}\n{recipient}".encode(), "sha256").digest()
    # Base32 turns each 5 bytes into 8 characters on their own, so the first 10
    # bytes give the same first 10 characters as the whole digest, at a third of
    # the cost (b32encode is pure Python; this runs for every copy sent).
    return base64.b32encode(digest[:10]).decode("ascii").lower()[:VERP_TOKEN_CHARS]


def verp_sender(secret: bytes, listname: str, recipient: str, domain: str) -> str:
    """The envelope sender of one copy: <list>-bounces+<token>@domain."""
    return f"{listname}{BOUNCES_SUFFIX}+{verp_token(secret, listname, recipient)}@{domain}"


def parse_bounce_address(local_part: str) -> tuple[str, str] | None:
    """(list, token or '') from a bounce address's local part."""
    base, _, token = local_part.lower().partition("+")
    if not base.endswith(BOUNCES_SUFFIX) or len(base) == len(BOUNCES_SUFFIX):
        return None
    return base[: -len(BOUNCES_SUFFIX)], token


def parse_unsubscribe_address(local_part: str) -> str | None:
    base = local_part.lower()
    if base.endswith(UNSUBSCRIBE_SUFFIX) and len(base) > len(UNSUBSCRIBE_SUFFIX):
        return base[: -len(UNSUBSCRIBE_SUFFIX)]
    return None


def dsn_failures(raw: bytes) -> tuple[set[str], set[str]]:
    """(temporary, permanent) failed recipients a DSN reports (RFC 3464 and common forms)."""
    from flufl.bounce import all_failures

    try:
        msg = email.message_from_bytes(raw[:DSN_READ_LIMIT], policy=email.policy.compat32)
        temporary, permanent = all_failures(msg)
    except Exception:  # a broken DSN reports nothing
        return set(), set()
    return _decoded(temporary), _decoded(permanent)


def _decoded(found: Iterable[bytes | str]) -> set[str]:
    out = set()
    for item in found:
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        if address := addresses.normalize(text):
            out.add(address)
    return out


@dataclass
class Feedback:
    """Applies feedback for one site; open one per request or run."""

    config: Config
    spool: Spool
    state: State

    @property
    def suppression(self) -> Suppression:
        return Suppression(self.state, self.config.bounces)

    @property
    def webhooks(self) -> Webhooks:
        return Webhooks(self.spool.root.parent, self.config.webhooks)

    def bounce(
        self,
        address: str,
        permanent: bool,
        listname: str,
        source: str,
        detail: str = "",
        message: str | None = None,
        said: str | None = None,
    ) -> str:
        """Score or suppress a bounced address (detail goes with the suppression);
        message is the queue id whose timeline holds the bounce, if one does, and said
        what the report said, for the webhook."""
        s = self.suppression
        if permanent:
            action = s.permanent_bounce(address, source, detail)
        else:
            action = s.transient_bounce(address, source, listname)
            if action.endswith("delivery disabled"):
                self._tell_moderators(address, listname, action)
        self.webhooks.emit(
            "bounced",
            message=message,
            address=address,
            list=listname or None,
            detail=said or detail,
            permanent=permanent,
            source=source,
            action=action,
        )
        return action

    def complaint(
        self, address: str, listname: str, source: str, detail: str = "", message: str | None = None
    ) -> str:
        action = self.suppression.complaint(address, listname, source)
        try:
            if listname and self.unsubscribe(address, listname, source, why="complaint"):
                action += f"; unsubscribed from {listname}"
        except RoutemailError as exc:
            action += f"; still a member: {exc}"
        self.webhooks.emit(
            "complained",
            message=message,
            address=address,
            list=listname or None,
            detail=detail,
            source=source,
            action=action,
        )
        return action

    def unsubscribe(self, address: str, listname: str, source: str, why: str = "request") -> bool:
        """Remove address from a named list in lists.toml, or (a dynamic list, whose
        members come from elsewhere) suppress it for that list; False if it was not
        a member of a named list."""
        mlist = self.config.lists.get(listname)
        if mlist is None:
            self.suppression.add(address, listname, source, f"unsubscribed ({why})")
            self._left(address, listname, source)
            return True
        if addresses.same(self.state.list_administrator(mlist) or "", address):
            raise RoutemailError(f"{address} administers {listname} and cannot be unsubscribed")
        try:
            removed = listedit.remove_member(self.config.path, listname, address)
        except listedit.NoSuchList:
            return False
        if removed:
            self.suppression.record(address, listname, "unsubscribe", source, f"removed ({why})")
            self._left(address, listname, source)
            # The member's own request, by mail or a one-click link; else routemail's.
            how = (
                "mail"
                if source.startswith("mailto:")
                else "web"
                if source == "one-click"
                else source
            )
            actor = owners.Actor(address if why == "request" else "routemail", how)
            owners.log_change(self.spool, listname, f"removed member {address}", actor)
        return removed

    def _left(self, address: str, listname: str, source: str) -> None:
        with self.state.transaction() as db:
            # One-click links in copies made before now stop working if address rejoins.
            self.state.membership_changed(db, listname, address)
        self.webhooks.emit("unsubscribed", address=address, list=listname, source=source)

    def ses_event(self, event: Mapping[str, Any], source: str) -> Applied:
        """Apply an SES notification or event-publishing record: what was done, and
        which message's timeline each report went on."""
        kind = event.get("notificationType") or event.get("eventType")
        mail = event.get("mail")
        mail = mail if isinstance(mail, dict) else {}
        listname = _tag(mail, "list").lower()
        reports = tracking.ses_reports(event, sidecar.now())
        placed = self._track(_tag(mail, "message"), listname, reports)
        if placed.too_early and kind not in ("Bounce", "Complaint"):
            # Nothing else to apply: SNS delivers the event again, by when the copy's S
            # line is there. A bounce or complaint is applied now (it may be about a
            # notice, which has no S line ever) and goes on no timeline.
            raise ReportTooEarly(
                f"{placed.msg_id}: {', '.join(placed.too_early)}: {tracking.TOO_EARLY}"
            )
        done = []
        if kind == "Bounce":
            bounce = event.get("bounce") or {}
            permanent = bounce.get("bounceType") == "Permanent"
            feedback_id = bounce.get("feedbackId", "")
            for address in _recipients(bounce.get("bouncedRecipients")):
                detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType', '')}"
                action = self.bounce(
                    address,
                    permanent,
                    listname,
                    f"{source}:{feedback_id}",
                    detail,
                    placed.message(address),
                    placed.said(address),
                )
                done.append(f"{address}: {action}")
        elif kind == "Complaint":
            complaint = event.get("complaint") or {}
            feedback_id = complaint.get("feedbackId", "")
            for address in _recipients(complaint.get("complainedRecipients")):
                action = self.complaint(
                    address,
                    listname,
                    f"{source}:{feedback_id}",
                    placed.said(address) or "complaint",
                    placed.message(address),
                )
                done.append(f"{address}: {action}")
        return Applied(done, [f"{address}: {what}" for address, what in placed.notes])

    def _track(self, msg_id: str, listname: str, reports: list[tracking.Report]) -> Placed:
        """Put the reports on msg_id's timeline; the webhook events of deliveries,
        delays and refusals go out for the reports written now (bounces and
        complaints have theirs from bounce() and complaint())."""
        placed = Placed(msg_id, None if listname in (ALL_LISTS, OUTGOING) else listname)
        if not reports:
            return placed
        if not msg_id:
            outcomes = ["names no queue entry (no message tag)"] * len(reports)
        else:
            outcomes = tracking.record(self.spool, msg_id, reports)
        for report, outcome in zip(reports, outcomes, strict=True):
            placed.add(report, outcome)
            if outcome == tracking.RECORDED and report.code in _REPORT_EVENTS:
                self.webhooks.copy(
                    _REPORT_EVENTS[report.code],
                    msg_id,
                    report.recipient,
                    placed.listname,
                    report.detail,
                    **_REPORT_FIELDS.get(report.code, {}),
                )
        return placed

    def _tell_moderators(self, address: str, listname: str, action: str) -> None:
        mlist = self.config.lists.get(listname)
        to = list(mlist.moderators) if mlist and mlist.moderators else [self.config.site.admin]
        text = (
            f"Mail to {address} keeps bouncing ({action}).\n\n"
            "routemail no longer sends to this address. When the problem is fixed:\n"
            f"  routemail suppression remove {address}\n"
        )
        for moderator in to:
            send_notice(
                self.config,
                self.spool,
                moderator,
                f"Delivery to {address} disabled" + (f" on {listname}" if listname else ""),
                text,
                "bounce-notice",
            )


# Webhook events of the reports that bounce() and complaint() do not emit.
_REPORT_EVENTS = {
    sidecar.DELIVERED: "delivered",
    sidecar.DELAYED: "deferred",
    sidecar.UNDELIVERABLE: "gave_up",
}
_REPORT_FIELDS: dict[str, dict[str, Any]] = {
    sidecar.DELAYED: {"attempts": None},
    sidecar.UNDELIVERABLE: {"attempts": None},
}


class ReportTooEarly(RoutemailError):
    """An SES event about a copy whose S line is not written yet: ask again later."""


@dataclass(frozen=True)
class Applied:
    """What an SES event did: suppression actions, and where its reports went."""

    actions: list[str]
    timeline: list[str]


@dataclass
class Placed:
    """Where an SES event's reports went: on msg_id's timeline, or why not."""

    msg_id: str
    listname: str | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)
    reports: dict[str, tracking.Report] = field(default_factory=dict)
    on_timeline: set[str] = field(default_factory=set)
    too_early: list[str] = field(default_factory=list)  # recipients to ask about again

    def add(self, report: tracking.Report, outcome: str) -> None:
        on_timeline = outcome in (tracking.RECORDED, tracking.DUPLICATE)
        self.reports[addresses.key(report.recipient)] = report
        if on_timeline:
            self.on_timeline.add(addresses.key(report.recipient))
        if outcome == tracking.TOO_EARLY:
            self.too_early.append(report.recipient)
        where = f"on the timeline of {self.msg_id}" if on_timeline else "not on a timeline"
        self.notes.append((report.recipient, f"{_WORDS[report.code]} {where} ({outcome})"))

    def message(self, address: str) -> str | None:
        return self.msg_id if addresses.key(address) in self.on_timeline else None

    def said(self, address: str) -> str | None:
        """What the event said about address (the diagnostic, the complaint's type)."""
        report = self.reports.get(addresses.key(address))
        return report.detail if report else None


_WORDS = {
    sidecar.DELIVERED: "delivered",
    sidecar.BOUNCED: "bounce",
    sidecar.COMPLAINED: "complaint",
    sidecar.DELAYED: "delayed",
    sidecar.UNDELIVERABLE: "refused by SES",
}


def _tag(mail: Mapping[str, Any], name: str) -> str:
    """A message tag's value: event publishing gives tags as {name: [values]}."""
    tags = mail.get("tags")
    if not isinstance(tags, dict):
        return ALL_LISTS
    values = tags.get(name)
    if isinstance(values, list) and values and isinstance(values[0], str):
        return sestags.decode(values[0][: sestags.MAX_LENGTH])
    return ALL_LISTS


def _recipients(items: Any) -> list[str]:
    out = []
    for item in items if isinstance(items, list) else []:
        raw = item.get("emailAddress") if isinstance(item, dict) else None
        if isinstance(raw, str) and (address := addresses.normalize(raw)):
            out.append(address)
    return out
