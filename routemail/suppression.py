"""Suppression and bounce scores: who must not be sent mail, and why.

An address is suppressed for every list (list '') after a permanent bounce
or when transient bounces reach the threshold, or for one list after a
complaint about it. Every change is recorded in deliverability_log together
with the event that caused it. The tables are migration 2 of routemail.state.
Addresses are compared ignoring case (COLLATE NOCASE): rows written before
that rule may hold any spelling.
"""

from __future__ import annotations

import sqlite3
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from routemail.config import Bounces
from routemail.state import State

ALL_LISTS = ""
DAY = 86400.0
CHUNK = 500  # addresses per query: well under SQLite's limit on parameters
# How late a suppression another process adds (the receiver handling an SES
# complaint, `routemail suppression add`) may be seen by a fan-out under way.
RECHECK_SECONDS = 0.5
# COLLATE NOCASE folds ASCII letters only; so does this.
_NOCASE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def nocase(address: str) -> str:
    """The form in which SQLite's COLLATE NOCASE compares an address."""
    return address.translate(_NOCASE)


@dataclass(frozen=True)
class Suppressed:
    address: str
    list: str
    reason: str
    detail: str
    created: float


@dataclass(frozen=True)
class Score:
    address: str
    score: float
    last_bounce: float
    disabled: bool


@dataclass(frozen=True)
class LogEntry:
    time: float
    address: str
    list: str
    event: str
    source: str
    action: str


class Suppression:
    """Reads and changes suppression state in data/state.sqlite3."""

    def __init__(self, state: State, policy: Bounces) -> None:
        self.state = state
        self.policy = policy

    # -- reading -----------------------------------------------------------

    def reason(self, address: str, listname: str = ALL_LISTS) -> str | None:
        """Why address must not get mail for listname, or None."""
        row = self.state.db.execute(
            "SELECT reason, list FROM suppressions WHERE address = ? COLLATE NOCASE "
            "AND list IN ('', ?) "
            "ORDER BY list LIMIT 1",
            (address, listname.lower()),
        ).fetchone()
        if row is None:
            return None
        return f"{row[0]} (all lists)" if row[1] == ALL_LISTS else f"{row[0]} ({row[1]})"

    def reasons(self, addresses: Iterable[str], listname: str = ALL_LISTS) -> dict[str, str]:
        """reason() for many addresses in a few queries: the suppressed ones only,
        keyed by nocase(address)."""
        found: dict[str, tuple[str, str]] = {}  # nocase(address) -> (list, reason)
        wanted = list(dict.fromkeys(addresses))
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            marks = ", ".join("?" * len(chunk))  # placeholders only: values go as parameters
            rows = self.state.db.execute(
                f"SELECT address, list, reason FROM suppressions "
                f"WHERE address COLLATE NOCASE IN ({marks}) AND list IN ('', ?)",
                (*chunk, listname.lower()),
            )
            for address, scope, reason in rows:
                key = nocase(address)
                # As reason(): the suppression for all lists wins over the list's own.
                if key not in found or scope == ALL_LISTS:
                    found[key] = (scope, reason)
        return {
            key: f"{reason} (all lists)" if scope == ALL_LISTS else f"{reason} ({scope})"
            for key, (scope, reason) in found.items()
        }

    def entries(self) -> list[Suppressed]:
        rows = self.state.db.execute(
            "SELECT address, list, reason, detail, created FROM suppressions "
            "ORDER BY created, address"
        )
        return [Suppressed(*r) for r in rows]

    def scores(self) -> list[Score]:
        rows = self.state.db.execute(
            "SELECT b.address, b.score, b.last_bounce, s.address IS NOT NULL "
            "FROM bounce_scores b LEFT JOIN suppressions s "
            "ON s.address = b.address COLLATE NOCASE AND s.list = '' AND s.reason = 'disabled' "
            "ORDER BY b.score DESC, b.address"
        )
        return [Score(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def history(self, limit: int = 100) -> list[LogEntry]:
        rows = self.state.db.execute(
            "SELECT time, address, list, event, source, action FROM deliverability_log "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [LogEntry(*r) for r in rows]

    # -- events ------------------------------------------------------------

    def permanent_bounce(self, address: str, source: str, detail: str = "") -> str:
        return self._suppress(address, ALL_LISTS, "bounce", detail, "permanent-bounce", source)

    def transient_bounce(self, address: str, source: str, listname: str = ALL_LISTS) -> str:
        """Raise the score at most once a day; at the threshold, disable delivery."""
        now = self.state.clock()
        with self.state.transaction() as db:
            row = db.execute(
                "SELECT address, score, last_bounce FROM bounce_scores "
                "WHERE address = ? COLLATE NOCASE",
                (address,),
            ).fetchone()
            if row:  # the score is kept under the spelling it was first counted for
                address, score, last = row
            else:
                score, last = 0.0, 0.0
            if row and now - last < DAY:
                action = f"score stays {score:g} (already counted today)"
                self._log(db, now, address, listname, "transient-bounce", source, action)
                return action
            if now - last >= self.policy.decay_days * DAY:
                score = 0.0  # old bounces no longer count
            score += 1
            db.execute(
                "INSERT INTO bounce_scores (address, score, last_bounce) VALUES (?, ?, ?) "
                "ON CONFLICT (address) DO UPDATE SET score = excluded.score, "
                "last_bounce = excluded.last_bounce",
                (address, score, now),
            )
            action = f"score {score:g} of {self.policy.threshold}"
            if score >= self.policy.threshold:
                self._insert(db, address, ALL_LISTS, "disabled", f"bounce score {score:g}", now)
                action += "; delivery disabled"
            self._log(db, now, address, listname, "transient-bounce", source, action)
            return action

    def complaint(self, address: str, listname: str, source: str) -> str:
        scope = listname.lower() if listname else ALL_LISTS
        return self._suppress(address, scope, "complaint", "", "complaint", source)

    def add(self, address: str, listname: str, source: str, detail: str = "") -> str:
        return self._suppress(address, listname.lower(), "manual", detail, "manual-add", source)

    def remove(self, address: str, listname: str, source: str) -> bool:
        now = self.state.clock()
        with self.state.transaction() as db:
            gone = db.execute(
                "DELETE FROM suppressions WHERE address = ? COLLATE NOCASE AND list = ?",
                (address, listname.lower()),
            ).rowcount
            if gone and listname:  # back on a list: older one-click links stay retired
                self.state.membership_changed(db, listname.lower(), address)
            if listname == ALL_LISTS:
                db.execute("DELETE FROM bounce_scores WHERE address = ? COLLATE NOCASE", (address,))
            if gone:
                self._log(db, now, address, listname, "manual-remove", source, "unsuppressed")
        return bool(gone)

    def record(self, address: str, listname: str, event: str, source: str, action: str) -> None:
        """Log a change made elsewhere (an unsubscribe) beside the suppression changes."""
        with self.state.transaction() as db:
            self._log(db, self.state.clock(), address, listname, event, source, action)

    def _suppress(
        self, address: str, listname: str, reason: str, detail: str, event: str, source: str
    ) -> str:
        now = self.state.clock()
        with self.state.transaction() as db:
            self._insert(db, address, listname, reason, detail, now)
            action = f"suppressed for {listname or 'all lists'}"
            self._log(db, now, address, listname, event, source, action)
        return action

    @staticmethod
    def _insert(
        db: sqlite3.Connection, address: str, listname: str, reason: str, detail: str, now: float
    ) -> None:
        # Already suppressed under another spelling: that row stands.
        db.execute(
            "INSERT INTO suppressions (address, list, reason, detail, created) "
            "SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM suppressions "
            "WHERE address = ? COLLATE NOCASE AND list = ?)",
            (address, listname, reason, detail, now, address, listname),
        )

    @staticmethod
    def _log(
        db: sqlite3.Connection,
        now: float,
        address: str,
        listname: str,
        event: str,
        source: str,
        action: str,
    ) -> None:
        db.execute(
            "INSERT INTO deliverability_log (time, address, list, event, source, action) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (now, address, listname, event, source, action),
        )


class ListSuppressions:
    """Suppression.reason() for one list's recipients during a fan-out, read for all
    of them at once instead of one query per copy.

    The answer stays that of the suppression list as it stands: it is read again
    when this process changed the database (a bounce routed in the middle of the
    fan-out) before the next answer, and when another process did (the receiver
    handling an SES complaint, `routemail suppression add`) at most
    RECHECK_SECONDS later.
    """

    def __init__(
        self,
        suppression: Suppression,
        addresses: Iterable[str],
        listname: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.suppression = suppression
        self.addresses = list(addresses)
        self._asked = {nocase(a) for a in self.addresses}
        self.listname = listname
        self._clock = clock
        self._load()

    def _version(self) -> int:
        row = self.suppression.state.db.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def _load(self) -> None:
        db = self.suppression.state.db
        self._own_changes = db.total_changes
        self._others = self._version()
        self._checked = self._clock()
        self._reasons = self.suppression.reasons(self.addresses, self.listname)

    def _stale(self) -> bool:
        if self.suppression.state.db.total_changes != self._own_changes:
            return True
        if self._clock() - self._checked < RECHECK_SECONDS:
            return False
        self._checked = self._clock()
        return self._version() != self._others

    def reason(self, address: str) -> str | None:
        """Why address must not get this list's mail, or None."""
        if self._stale():
            self._load()
        key = nocase(address)
        if key not in self._asked:  # not one of the addresses read: ask on its own
            return self.suppression.reason(address, self.listname)
        return self._reasons.get(key)
