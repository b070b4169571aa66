"""The record routemail runs keep: data/run-state.json, read by `routemail status`,
/metrics and the admin alerts.

A run that worked (held the lock) rewrites it once at its end, atomically
(temporary file, fsync, rename), so a reader sees the last record or the one
before, never half of one. It holds the last run, what is known of the
transport, since when delivery has been failing, and the copies counted by
list over every run (the counters /metrics exposes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from routemail.atomic import replace_file
from routemail.tally import DEFERRED, GAVE_UP, SENT, Tally

FILENAME = "run-state.json"
LOCKNAME = ".run-state.lock"
COUNTED = (SENT, DEFERRED, GAVE_UP)  # per list, over all runs
MAX_PROBLEMS = 20  # lines kept of the last run's problems


@dataclass
class LastRun:
    started: float
    finished: float
    result: str  # ok | undelivered | errors
    processed: int
    counts: dict[str, int]
    problems: list[str]

    @property
    def duration(self) -> float:
        return self.finished - self.started


@dataclass
class TransportState:
    last_success: float | None = None
    last_failure: float | None = None
    last_failure_detail: str = ""
    circuit_open: bool = False


@dataclass
class RunState:
    last_run: LastRun | None = None
    transport: TransportState = field(default_factory=TransportState)
    failing_since: float | None = None  # runs have deferred copies and sent none since then
    copies: dict[str, dict[str, int]] = field(default_factory=dict)  # list -> outcome -> n
    runs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load(data_dir: Path) -> RunState:
    """The record, or an empty one if no run has written it (or it cannot be read)."""
    try:
        data = json.loads((data_dir / FILENAME).read_text("utf-8"))
        last = data.get("last_run")
        return RunState(
            last_run=LastRun(**last) if last else None,
            transport=TransportState(**data.get("transport", {})),
            failing_since=data.get("failing_since"),
            copies=dict(data.get("copies", {})),
            runs=int(data.get("runs", 0)),
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return RunState()


def record(
    data_dir: Path, tally: Tally, *, started: float, finished: float, processed: int, circuit: bool
) -> RunState:
    """Fold one finished run into the record and write it; returns the new record."""
    with _locked(data_dir):
        state = _fold(load(data_dir), tally, started, finished, processed, circuit)
        data = json.dumps(state.as_dict(), indent=1, sort_keys=True).encode()
        replace_file(data_dir / FILENAME, data)
    return state


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Read-modify-write by one process at a time (a run records after its last scan,
    outside the run lock, so two runs may end together)."""
    fd = os.open(data_dir / LOCKNAME, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fold(
    state: RunState,
    tally: Tally,
    started: float,
    finished: float,
    processed: int,
    circuit: bool,
) -> RunState:
    state.runs += 1
    state.last_run = LastRun(
        started,
        finished,
        tally.result,
        processed,
        tally.total.as_dict(),
        [p.line() for p in tally.problems[:MAX_PROBLEMS]],
    )
    t = state.transport
    t.last_success = tally.last_sent or t.last_success
    if tally.last_failure:
        t.last_failure, t.last_failure_detail = tally.last_failure, tally.last_failure_detail
    t.circuit_open = circuit
    if tally.total.sent:
        state.failing_since = None
    elif tally.total.deferred and state.failing_since is None:
        state.failing_since = started
    for name, counts in tally.lists.items():
        kept = state.copies.setdefault(name, dict.fromkeys(COUNTED, 0))
        for outcome in COUNTED:
            kept[outcome] = kept.get(outcome, 0) + getattr(counts, outcome)
    return state
