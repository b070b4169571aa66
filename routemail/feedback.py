"""Feedback from the mail system: SES bounce and complaint events, DSNs, unsubscribes.

Each turns into suppression changes (routemail.suppression), membership
changes in lists.toml (routemail.listedit), webhook events, and, when a
transient-bounce score disables an address, a note to the list's moderators.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from routemail import addresses, listedit, sestags
from routemail.config import Config
from routemail.errors import RoutemailError
from routemail.notify import send as send_notice
from routemail.spool import Spool
from routemail.state import State
from routemail.suppression import ALL_LISTS, Suppression
from routemail.webhooks import Outbox as Webhooks

BOUNCES_SUFFIX = "-bounces"
UNSUBSCRIBE_SUFFIX = "-unsubscribe"
VERP_TOKEN_CHARS = 10  # 50 bits: with the list's member set it names one recipient
# flufl.bounce runs some fifty pattern sets over every body line, about 30 s a MB of
# short lines; what it needs (the explanation and the delivery-status part) comes first
# in every bounce format, so only this much of a bounce is read. The returned original
# after it is not needed.
DSN_READ_LIMIT = 64 * 1024


def verp_token(secret: bytes, listname: str, recipient: str) -> str:
    digest = hmac.new(secret, f"verp\n{listname}\n{recipient}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:VERP_TOKEN_CHARS]


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
        self, address: str, permanent: bool, listname: str, source: str, detail: str = ""
    ) -> str:
        s = self.suppression
        if permanent:
            action = s.permanent_bounce(address, source, detail)
        else:
            action = s.transient_bounce(address, source, listname)
            if action.endswith("delivery disabled"):
                self._tell_moderators(address, listname, action)
        self.webhooks.emit(
            "bounced",
            address=address,
            list=listname or None,
            permanent=permanent,
            source=source,
            action=action,
        )
        return action

    def complaint(self, address: str, listname: str, source: str) -> str:
        action = self.suppression.complaint(address, listname, source)
        try:
            if listname and self.unsubscribe(address, listname, source, why="complaint"):
                action += f"; unsubscribed from {listname}"
        except RoutemailError as exc:
            action += f"; still a member: {exc}"
        self.webhooks.emit(
            "complained", address=address, list=listname or None, source=source, action=action
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
        return removed

    def _left(self, address: str, listname: str, source: str) -> None:
        with self.state.transaction() as db:
            # One-click links in copies made before now stop working if address rejoins.
            self.state.membership_changed(db, listname, address)
        self.webhooks.emit("unsubscribed", address=address, list=listname, source=source)

    def ses_event(self, event: Mapping[str, Any], source: str) -> list[str]:
        """Apply an SES notification or event-publishing record; what was done."""
        kind = event.get("notificationType") or event.get("eventType")
        mail = event.get("mail")
        mail = mail if isinstance(mail, dict) else {}
        listname = _tag(mail, "list")
        done = []
        if kind == "Bounce":
            bounce = event.get("bounce") or {}
            permanent = bounce.get("bounceType") == "Permanent"
            feedback_id = bounce.get("feedbackId", "")
            for address in _recipients(bounce.get("bouncedRecipients")):
                detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType', '')}"
                action = self.bounce(
                    address, permanent, listname, f"{source}:{feedback_id}", detail
                )
                done.append(f"{address}: {action}")
        elif kind == "Complaint":
            complaint = event.get("complaint") or {}
            feedback_id = complaint.get("feedbackId", "")
            for address in _recipients(complaint.get("complainedRecipients")):
                action = self.complaint(address, listname, f"{source}:{feedback_id}")
                done.append(f"{address}: {action}")
        return done

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


def _tag(mail: Mapping[str, Any], name: str) -> str:
    """A message tag's value: event publishing gives tags as {name: [values]}."""
    tags = mail.get("tags")
    if not isinstance(tags, dict):
        return ALL_LISTS
    values = tags.get(name)
    if isinstance(values, list) and values and isinstance(values[0], str):
        return sestags.decode(values[0]).lower()
    return ALL_LISTS


def _recipients(items: Any) -> list[str]:
    out = []
    for item in items if isinstance(items, list) else []:
        raw = item.get("emailAddress") if isinstance(item, dict) else None
        if isinstance(raw, str) and (address := addresses.normalize(raw)):
            out.append(address)
    return out
