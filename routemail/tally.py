"""What one `routemail run` did: copies and messages counted in memory, and its problems.

The router counts each outcome as it records it; nothing here touches the
disk, so counting costs the fan-out nothing but a few integer additions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# What became of one copy this run, and of one message.
SENT = "sent"
DEFERRED = "deferred"  # an F line: tried again by a later run
GAVE_UP = "gave_up"  # a G line
SUPPRESSED = "suppressed"  # a K line
HELD = "held"
FORWARDED = "forwarded"
DISCARDED = "discarded"

# How bad a problem is, for the exit status: mail waits (or was given up) / routemail failed.
UNDELIVERED = "undelivered"
ERROR = "error"

OnCopy = Callable[["Tally"], None]


@dataclass
class Counts:
    sent: int = 0
    deferred: int = 0
    gave_up: int = 0
    suppressed: int = 0
    held: int = 0
    forwarded: int = 0
    discarded: int = 0

    def add(self, outcome: str, n: int = 1) -> None:
        setattr(self, outcome, getattr(self, outcome) + n)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """'copies: 3 sent, 1 deferred; messages: 1 held', leaving out the zeros."""
        copies = _nonzero(
            ("sent", self.sent),
            ("deferred", self.deferred),
            ("given up", self.gave_up),
            ("suppressed", self.suppressed),
        )
        messages = _nonzero(
            ("held", self.held), ("forwarded", self.forwarded), ("discarded", self.discarded)
        )
        parts = [f"copies: {copies}"] if copies else []
        parts += [f"messages: {messages}"] if messages else []
        return "; ".join(parts) or "nothing sent"


def _nonzero(*pairs: tuple[str, int]) -> str:
    return ", ".join(f"{n} {word}" for word, n in pairs if n)


@dataclass
class Problem:
    """One line for the operator: what failed, where, and how often this run."""

    severity: str  # UNDELIVERED | ERROR
    where: str  # a queue id, "transport", "webhooks"
    text: str
    count: int = 1

    def line(self) -> str:
        times = f" ({self.count} copies)" if self.count > 1 else ""
        return f"{self.severity}: {self.where}: {self.text}{times}"


@dataclass
class Tally:
    """Counts per message, per list and in total, and the problems of a run."""

    messages: dict[str, Counts] = field(default_factory=dict)
    lists: dict[str, Counts] = field(default_factory=dict)
    total: Counts = field(default_factory=Counts)
    problems: list[Problem] = field(default_factory=list)
    expected: int = 0  # copies the run has started on so far (for progress)
    started: float = field(default_factory=time.monotonic)
    on_copy: OnCopy | None = None
    last_sent: float | None = None  # wall-clock times, for `routemail status`
    last_failure: float | None = None
    last_failure_detail: str = ""
    _grouped: dict[tuple[str, str, str], Problem] = field(default_factory=dict)

    def expect(self, copies: int) -> None:
        """Copies about to be attempted (a list's recipients not yet finished)."""
        self.expected += copies

    @property
    def copies_done(self) -> int:
        t = self.total
        return t.sent + t.deferred + t.gave_up + t.suppressed

    def copy(self, msg_id: str, listname: str, outcome: str, detail: str = "") -> None:
        """One copy's outcome; a deferral or give-up is a problem, grouped per
        message, list and outcome so that --quiet prints one line for a list's
        copies stuck behind the same dead server."""
        self._count(msg_id, listname, outcome)
        if outcome == SENT:
            self.last_sent = time.time()
        elif outcome in (DEFERRED, GAVE_UP):
            self.last_failure, self.last_failure_detail = time.time(), detail
            key = (msg_id, listname, outcome)
            word = "deferred" if outcome == DEFERRED else "given up"
            text = f"{listname}: {word}: {detail}" if listname else f"{word}: {detail}"
            if key in self._grouped:
                grouped = self._grouped[key]
                grouped.count += 1
                # A reason from a copy that was tried says more than the "not attempted:
                # <the same>" of those after it, whichever of them came back first.
                if ": not attempted:" in grouped.text and not detail.startswith("not attempted:"):
                    grouped.text = text
            else:
                self._grouped[key] = self.problem(UNDELIVERED, msg_id, text)
        if self.on_copy is not None:
            self.on_copy(self)

    def message(self, msg_id: str, outcome: str, listname: str = "") -> None:
        """A message held, forwarded to the admin or discarded."""
        self._count(msg_id, listname, outcome)

    def problem(self, severity: str, where: str, text: str) -> Problem:
        p = Problem(severity, where, text)
        self.problems.append(p)
        return p

    def _count(self, msg_id: str, listname: str, outcome: str) -> None:
        self.messages.setdefault(msg_id, Counts()).add(outcome)
        if listname:
            self.lists.setdefault(listname, Counts()).add(outcome)
        self.total.add(outcome)

    @property
    def result(self) -> str:
        """'ok', 'undelivered' (copies deferred or given up) or 'errors'."""
        if self.errors:
            return ERROR + "s"
        return UNDELIVERED if self.undelivered else "ok"

    @property
    def undelivered(self) -> bool:
        return any(p.severity == UNDELIVERED for p in self.problems)

    @property
    def errors(self) -> list[str]:
        return [f"{p.where}: {p.text}" for p in self.problems if p.severity == ERROR]
