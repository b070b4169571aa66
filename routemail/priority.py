"""Priority mail first: a list's fan-out does not hold up transactional mail and notices.

While a list's copies go out, the delivery loop asks due() before each copy. At
most once a second that looks at the queue (one scandir) for entries this run
has not routed yet; those whose sidecar says they may need mail sent now (our
own transactional mail not yet done, or a message never routed, which may need
a moderation request or a forward to the admin) are routed at once, in urgent
mode: everything but list fan-out and approvals (which lead to fan-out) is done,
and those are left for the entry's own turn later in the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from routemail import sidecar
from routemail.errors import UnknownMessage
from routemail.spool import Spool

LOOK_EVERY = 1.0  # seconds between two looks at the queue during a fan-out
ROUTED_BEFORE = frozenset({sidecar.RECEIVED, sidecar.VERDICTS, sidecar.OUTGOING})


class Interleave:
    """Finds priority entries during a fan-out and has them routed first."""

    def __init__(
        self,
        spool: Spool,
        route_urgent: Callable[[str], object],
        seen: set[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = spool
        self.route_urgent = route_urgent
        self.seen = seen  # entries this run has routed (or is routing)
        self._clock = clock
        self._next_look = clock() + LOOK_EVERY
        self._waiting: list[str] = []
        self._running = False

    def due(self) -> bool:
        if self._running or self._clock() < self._next_look:
            return False
        self._next_look = self._clock() + LOOK_EVERY
        self._waiting = [
            msg_id
            for msg_id in self.spool.pending_ids()
            if msg_id not in self.seen and self._may_send_now(msg_id)
        ]
        return bool(self._waiting)

    def run(self) -> None:
        self._running = True
        try:
            for msg_id in self._waiting:
                self.route_urgent(msg_id)
        finally:
            self._running = False
            self._waiting = []
        # What they left (list mail) gets its own scan before this run ends.
        self.spool.rescan_mark.touch()

    def _may_send_now(self, msg_id: str) -> bool:
        try:
            history = self.spool.history(msg_id)
        except UnknownMessage:
            return False
        if history.outgoing and not history.has(sidecar.LIST_SENT, "outgoing"):
            return True
        return {e.code for e in history.events} <= ROUTED_BEFORE
