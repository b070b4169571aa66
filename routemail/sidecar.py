"""The sidecar: a message's append-only event log, one line per event.

The format is documented in docs/spool-format.md; this module is the only
code that knows how lines look.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from routemail import addresses

# The seven line types of the original service.
RECEIVED = "R"  # R timestamp destination...
VERDICTS = "V"  # V dkim dmarc spf spam virus
UNKNOWN = "X"  # X timestamp destination          forwarded to the admin
MODERATION = "M"  # M timestamp list [reason...]    moderation request sent
APPROVED = "A"  # A timestamp list approver [how]
LIST_SENT = "L"  # L timestamp list                all recipients done
SENT = "S"  # S timestamp recipient [answer...]    handed to the next hop, which answered so
# Line types added by routemail (docs/spool-format.md).
FAILED = "F"  # F timestamp recipient detail...  temporary failure, retried later
GAVE_UP = "G"  # G timestamp recipient detail... permanent failure or give-up
SKIPPED = "K"  # K timestamp recipient reason    not sent (suppressed, disabled)
REJECTED = "J"  # J timestamp list by [how [reason...]]  a moderator rejected it
EXPIRED = "E"  # E timestamp list                hold expired unapproved
DEFERRED = "W"  # W timestamp list reason...      list could not be resolved; retried
DISCARDED = "D"  # D timestamp destination reason... nothing further for that destination
OUTGOING = "O"  # O timestamp recipient...        our own mail to send as it is
STORED = "I"  # I sha256                          the stored message file's digest (first line)
# What the mail system reported after a copy was sent (SES events, DSNs by VERP):
# code timestamp recipient ref detail...; ref names the report, so each is recorded once.
DELIVERED = "Y"  # the receiving server accepted the copy
BOUNCED = "B"  # the copy bounced (detail: Permanent/..., Transient/...)
COMPLAINED = "C"  # the recipient reported the copy as spam
DELAYED = "Q"  # the receiving server deferred it; SES keeps trying
UNDELIVERABLE = "U"  # SES accepted the copy but refused to deliver it (a virus)
REPORTS = (DELIVERED, BOUNCED, COMPLAINED, DELAYED, UNDELIVERABLE)
DROPPED = "N"  # N timestamp list by how          a moderator discarded it (nobody is told)
TOLD = "T"  # T timestamp list event author     the author was told: held, rejected, expired

VERDICT_NAMES = ("dkim", "dmarc", "spf", "spam", "virus")
VERDICT_VALUES = ("PASS", "FAIL", "GRAY", "PROCESSING_FAILED", "DISABLED")
TIMESTAMPED = frozenset("RXMALSFGKJEWDOYBCQUNT")
# The lines that settle a hold: approved, rejected, discarded by a moderator, expired.
DECISIONS = (APPROVED, REJECTED, DROPPED, EXPIRED)


def now() -> dt.datetime:
    """The current time in UTC, to the second (sidecar resolution)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@functools.lru_cache(maxsize=8)
def format_time(when: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, as every sidecar and log line writes it. (Remembered
    for the last few seconds: a fan-out stamps hundreds of lines a second.)"""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII)


def parse_time(text: str) -> dt.datetime:
    # Checked, then read by fromisoformat: strptime costs ~20 us a line, most of the time
    # spent reading a big list's sidecar (one S line per recipient).
    if not _TIME.fullmatch(text):
        raise ValueError(f"not a sidecar time: {text[:40]!r}")
    return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Event:
    """One sidecar line: its code, its time (None for V) and its fields."""

    code: str
    time: dt.datetime | None
    fields: tuple[str, ...]

    def format(self) -> str:
        parts = [self.code]
        if self.time is not None:
            parts.append(format_time(self.time))
        parts.extend(f.replace(" ", "\\_") if _quoted_address(f) else f for f in self.fields)
        return " ".join(parts) + "\n"


# An author's address with a quoted local part may hold spaces ("System
# Administrator"@example.org); a field holds no space, so each is written "\_",
# which the canonical quoted form (routemail.addresses) never holds: there a
# backslash only escapes a backslash or a DQUOTE.
_QUOTED = re.compile(r'"(?:[^"\\\s]| |\\["\\])*"@[^\s"]+')
_QUOTED_WRITTEN = re.compile(r'"(?:[^"\\\s]|\\["\\_])*"@[^\s"]+')
_PAIR = re.compile(r"\\(.)")


def _quoted_address(field: str) -> bool:
    return field.startswith('"') and _QUOTED.fullmatch(field) is not None


def _unescaped(part: str) -> str:
    if not _QUOTED_WRITTEN.fullmatch(part):
        return part
    return _PAIR.sub(lambda m: " " if m.group(1) == "_" else m.group(0), part)


def event(code: str, *fields: str, when: dt.datetime | None = None) -> Event:
    """An event stamped now; fields must not contain whitespace, except the last and an
    address with a quoted local part."""
    clean = tuple(f if _quoted_address(f) else _one_line(f) for f in fields)
    return Event(code, (when or now()) if code in TIMESTAMPED else None, clean)


def verdicts_event(verdicts: dict[str, str]) -> Event:
    return Event(VERDICTS, None, tuple(verdicts.get(n, "DISABLED") for n in VERDICT_NAMES))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse(text: str) -> list[Event]:
    """Every well-formed line. A torn last line (a write cut short) is ignored; lines
    end only at "\n", so no other line-break character can split or join them."""
    events = []
    *lines, _torn = text.split("\n")
    for line in lines:
        parts = line.split()
        if "\\_" in line:  # rare: an address with a quoted local part holding spaces
            parts = [_unescaped(p) for p in parts]
        if not parts:
            continue
        code = parts[0]
        if code in TIMESTAMPED and len(parts) >= 2:
            try:
                when = parse_time(parts[1])
            except ValueError:
                continue
            events.append(Event(code, when, tuple(parts[2:])))
        else:
            events.append(Event(code, None, tuple(parts[1:])))
    return events


@dataclass(frozen=True)
class History:
    """What a sidecar says has happened to a message, in queryable form."""

    events: tuple[Event, ...]

    @classmethod
    def of(cls, events: Iterable[Event]) -> History:
        """The history in these lines; the I line describes the file, not an event."""
        return cls(tuple(e for e in events if e.code != STORED))

    def _with(self, code: str) -> list[Event]:
        return [e for e in self.events if e.code == code]

    @property
    def destinations(self) -> list[str]:
        """Every envelope destination, in order of first receipt, once each."""
        seen: dict[str, None] = {}
        for e in self._with(RECEIVED):
            for d in e.fields:
                seen.setdefault(d.lower(), None)
        return list(seen)

    @property
    def outgoing(self) -> list[str]:
        """Recipients of transactional mail (O lines), once each."""
        return list(dict.fromkeys(r for e in self._with(OUTGOING) for r in e.fields))

    @property
    def verdicts(self) -> dict[str, str]:
        """The most pessimistic verdict of each kind over all receipts."""
        merged: dict[str, str] = {}
        for e in self._with(VERDICTS):
            for name, value in zip(VERDICT_NAMES, e.fields, strict=False):
                if merged.get(name, "PASS") == "PASS":
                    merged[name] = value
        return merged

    @property
    def received_at(self) -> dt.datetime | None:
        times = [e.time for e in self.events if e.code in (RECEIVED, OUTGOING) and e.time]
        return min(times) if times else None

    @property
    def last_activity(self) -> dt.datetime | None:
        times = [e.time for e in self.events if e.time]
        return max(times) if times else None

    def lists_with(self, code: str) -> set[str]:
        """Lists (first field) named by events of this code."""
        return {e.fields[0].lower() for e in self._with(code) if e.fields}

    def approver(self, listname: str) -> str | None:
        for e in self._with(APPROVED):
            if e.fields and e.fields[0].lower() == listname.lower():
                return e.fields[1] if len(e.fields) > 1 else "?"
        return None

    def decision(self, listname: str) -> Event | None:
        """The first line that settled the hold on listname (A, J, N or E), if any."""
        want = listname.lower()
        return next(
            (
                e
                for e in self.events
                if e.code in DECISIONS and e.fields and e.fields[0].lower() == want
            ),
            None,
        )

    def hold_reason(self, listname: str) -> str:
        """Why the message was held on listname, as its M line says ("" before M lines
        carried a reason)."""
        want = listname.lower()
        for e in self._with(MODERATION):
            if e.fields and e.fields[0].lower() == want:
                return " ".join(e.fields[1:])
        return ""

    def told(self, event: str) -> set[str]:
        """Lists the author was told of this event for (T lines)."""
        return {e.fields[0].lower() for e in self._with(TOLD) if e.fields[1:2] == (event,)}

    # Recipients are as the list spells them; callers compare them with
    # addresses.key (a sidecar written before may hold another spelling).
    @property
    def sent_to(self) -> set[str]:
        return {e.fields[0] for e in self._with(SENT) if e.fields}

    @property
    def finished_recipients(self) -> set[str]:
        """Recipients that need nothing more: sent, given up on or skipped."""
        return {e.fields[0] for e in self.events if e.code in (SENT, GAVE_UP, SKIPPED) and e.fields}

    def failures(self, recipient: str) -> list[Event]:
        want = addresses.key(recipient)
        return [e for e in self._with(FAILED) if e.fields and addresses.key(e.fields[0]) == want]

    @property
    def held_lists(self) -> set[str]:
        """Lists the message waits on a moderator for (M, and no A, J, E or L since)."""
        settled = set().union(*(self.lists_with(c) for c in (*DECISIONS, LIST_SENT)))
        return self.lists_with(MODERATION) - settled

    @property
    def discarded_destinations(self) -> set[str]:
        """Destinations settled by a D line: nothing more happens for them."""
        return self.lists_with(DISCARDED)

    @property
    def discarded(self) -> bool:
        """Every destination was discarded (each one by its own D line)."""
        destinations = self.destinations
        return bool(destinations) and set(destinations) <= self.discarded_destinations

    def has(self, code: str, *fields: str) -> bool:
        want = tuple(f.lower() for f in fields)
        return any(
            tuple(f.lower() for f in e.fields[: len(want)]) == want for e in self._with(code)
        )


def summary_state(history: History, pending: bool) -> str:
    """One word for `routemail queue`: pending, held, done or discarded."""
    if pending:
        return "pending"
    if history.held_lists:
        return "held"
    return "discarded" if history.discarded else "done"


def describe(e: Event) -> str:
    """A sentence for `routemail show`."""
    f: Sequence[str] = e.fields
    first = f[0] if f else "?"
    rest = " ".join(f[1:])
    texts = {
        RECEIVED: f"received for {', '.join(f)}",
        VERDICTS: " ".join(f"{n}={v}" for n, v in zip(VERDICT_NAMES, f, strict=False)),
        UNKNOWN: f"unknown destination {first}: forwarded to the admin",
        MODERATION: f"held for moderation on {first}; request sent to its moderators"
        + (f" ({rest})" if rest else ""),
        APPROVED: f"approved for {first} by {_by(f)}",
        LIST_SENT: f"done with every recipient of {first}",
        SENT: f"sent to {first}",
        FAILED: f"temporary failure for {first}: {rest}",
        GAVE_UP: f"gave up on {first}: {rest}",
        SKIPPED: f"skipped {first}: {rest}",
        REJECTED: f"rejected for {first} by {_by(f)}"
        + (f": {' '.join(f[3:])}" if len(f) > 3 else ""),
        DROPPED: f"discarded for {first} by {_by(f)}",
        TOLD: f"the author ({' '.join(f[2:]) or '?'}) was told it was {f[1] if len(f) > 1 else '?'}"
        f" on {first}",
        EXPIRED: f"hold for {first} expired without approval",
        DEFERRED: f"could not resolve {first} ({rest}); will retry",
        DISCARDED: f"discarded for {first}: {rest}",
        OUTGOING: f"outgoing mail for {', '.join(f)}",
        DELIVERED: f"delivered to {first}: {_detail(f)}",
        BOUNCED: f"bounced for {first}: {_detail(f)}",
        COMPLAINED: f"{first} complained: {_detail(f)}",
        DELAYED: f"delayed for {first}: {_detail(f)}",
        UNDELIVERABLE: f"not delivered to {first}: {_detail(f)}",
    }
    return texts.get(e.code, f"{e.code} {' '.join(f)}")


def _detail(fields: Sequence[str]) -> str:
    """A report line's detail with the report that made it: `text (ref)`."""
    ref = fields[1] if len(fields) > 1 else "?"
    return f"{' '.join(fields[2:]) or '-'} ({ref})"


def decision_how(fields: Sequence[str]) -> str:
    """How an A, J or N line's moderator decided: web, api, mail or shell. Lines written
    before the field existed say nothing: an approval by `shell:USER` came from the
    shell, any other approval by mail."""
    if len(fields) > 2:
        return fields[2]
    return "shell" if fields[1:2] and fields[1].startswith("shell:") else "mail"


def _by(fields: Sequence[str]) -> str:
    by = fields[1] if len(fields) > 1 else "?"
    return f"{by} ({decision_how(fields)})"
