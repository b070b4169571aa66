"""Senders whose session announces the copy it sends next (SMTP with PIPELINING):
the next queued copy is taken along, is that session's next send, and is never lost
or sent twice when the session fails or the run closes."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

from routemail.transports import SENT, TEMPORARY, Envelope, Result
from routemail.transports.parallel import Paced

SENDER = "volunteers-bounces@lists.example.org"


@dataclass
class Announcer:
    """A session that records what it sent and what it was told comes next, and notes
    any send that is not the copy it was told of. `gate` holds its first send back."""

    name: str
    sent: list[str] = field(default_factory=list)
    told: list[str | None] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    script: list[Result] = field(default_factory=list)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    expected: str | None = None  # the copy announced last, which must come next
    takes_following = True

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        tags: Mapping[str, str],
        following: Envelope | None = None,
    ) -> Result:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
            self.gate = None
        if self.expected not in (None, recipient):
            self.broken.append(f"told {self.expected}, sent {recipient}")
        self.sent.append(recipient)
        self.told.append(following.recipient if following else None)
        result = self.script.pop(0) if self.script else Result(SENT, "250 ok")
        # A session that failed has hung up: what it announced is void.
        self.expected = None if result.halt else self.told[-1]
        return result

    def close(self) -> None:
        pass


def submit_all(paced: Paced, people: list[str]) -> list[Future[Result]]:
    return [paced.submit(SENDER, r, f"to {r}".encode(), {}) for r in people]


def test_the_next_queued_copy_is_this_sessions_next_send() -> None:
    gate = threading.Event()
    sessions = [Announcer("first", gate=gate)]

    def another() -> Announcer:
        sessions.append(Announcer(f"s{len(sessions)}"))
        return sessions[-1]

    paced = Paced(sessions[0], None, another=another, senders=2)
    people = [f"m{i}@example.com" for i in range(40)]
    with paced._lock:  # all queued before a sender looks (the lock is re-entrant)
        futures = submit_all(paced, people)
    gate.set()
    results = [f.result(10) for f in futures]
    paced.close()
    assert all(r.sent for r in results)
    sent = [r for s in sessions for r in s.sent]
    assert sorted(sent) == sorted(people)  # each once
    assert [s.broken for s in sessions] == [[] for _ in sessions]
    told = [t for s in sessions for t in s.told if t is not None]
    assert len(told) >= len(people) // 2, "copies queued, yet few were announced"


def test_a_failing_session_hands_the_announced_copy_back() -> None:
    """The session breaks on the copy it was sending: that copy and the one announced
    after it go back to the head of the queue, and each is then sent once."""
    gate = threading.Event()
    halt = Result(TEMPORARY, "smtp: connection reset", halt=True)
    session = Announcer("failing", script=[halt], gate=gate)
    paced = Paced(session, None, backoff=0.01, max_backoff=0.05)
    with paced._lock:  # all queued before the sender looks (the lock is re-entrant)
        futures = submit_all(paced, ["a@x.org", "b@x.org", "c@x.org"])
    gate.set()
    results = [f.result(10) for f in futures]
    paced.close()
    assert all(r.sent for r in results), results
    assert session.sent == ["a@x.org", "a@x.org", "b@x.org", "c@x.org"]
    assert session.told == ["b@x.org", "b@x.org", "c@x.org", None]
    assert session.broken == []


def test_a_run_closing_settles_the_announced_copy_unsent() -> None:
    """close() while a sender holds an announced copy: the copy being sent is settled
    as it went, the announced one as not attempted (a later run sends it)."""
    gate, entered = threading.Event(), threading.Event()
    session = Announcer("only", gate=gate, entered=entered)
    paced = Paced(session, None)
    # Queued together before the sender may look (the lock is re-entrant): it takes
    # the first and announces the second.
    with paced._lock:
        first, second, third = submit_all(paced, ["a@x.org", "b@x.org", "c@x.org"])
    assert entered.wait(10)
    closer = threading.Thread(target=paced.close)
    closer.start()
    gate.set()
    closer.join(10)
    assert first.result(1).sent
    assert session.told == ["b@x.org"]
    assert second.result(1).detail == "not attempted: the run stopped"
    assert third.result(1).detail == "not attempted: the run stopped"
    assert session.sent == ["a@x.org"]
