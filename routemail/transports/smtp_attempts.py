"""What becomes of each try of a copy in the SMTP pool: settled, or queued again.

The pool (routemail.transports.smtp_pool) decides which copy goes over which
connection; this keeps the copies waiting and the rules every try answers to: one
token bucket for `rate`, retries after a jittered backoff, a circuit breaker for the
relay as a whole, and a rest for a connection that failed before it is opened again.
"""

from __future__ import annotations

import logging
import random
from collections import deque

from routemail.transports import TEMPORARY, Result
from routemail.transports.pacing import Backoff, Breaker, Clock, TokenBucket, settled
from routemail.transports.smtp_connection import Copy

log = logging.getLogger(__name__)

STOPPED = Result(TEMPORARY, "not attempted: the run stopped")


class Attempts:
    """The copies waiting to be sent, in order, and those waiting out a backoff."""

    def __init__(
        self,
        rate: float | None,
        *,
        retries: int,
        backoff: float,
        max_backoff: float,
        clock: Clock,
        rng: random.Random | None,
    ) -> None:
        # A tenth of a second's worth of tokens lets pacing catch up after a slow
        # copy without a burst that a per-second quota would notice.
        self.bucket = TokenBucket(rate, capacity=rate / 10, clock=clock) if rate else None
        self.retries = retries
        self.backoff = Backoff(backoff, max_backoff, rng)
        self.breaker = Breaker(max_backoff, clock)
        self.queue: deque[Copy] = deque()
        self.closing = False
        self._later: list[Copy] = []  # waiting out a backoff
        self._resting: list[float] = []  # when each failed connection may be opened again
        self._clock = clock

    def due(self) -> None:
        """Copies whose backoff is over go to the end of the queue."""
        if self._later:
            now = self._clock()
            if any(copy.due <= now for copy in self._later):
                self.queue.extend(copy for copy in self._later if copy.due <= now)
                self._later = [copy for copy in self._later if copy.due > now]

    def waits(self, open_connections: int, most: int) -> list[float]:
        """Seconds until each thing the queue waits for: a retry, a rested connection."""
        now = self._clock()
        times = [copy.due - now for copy in self._later]
        if self.queue and self._resting and open_connections < most:
            times.append(min(self._resting) - now)
        return times

    def may_open(self, open_connections: int, most: int) -> bool:
        """Whether another connection may be opened: fewer than most open or resting
        after a failure."""
        now = self._clock()
        self._resting = [until for until in self._resting if until > now]
        return open_connections + len(self._resting) < most

    def admit(self, copy: Copy) -> bool:
        """Whether copy may be tried now; settled at once while the breaker is open."""
        admitted = self.breaker.admit()
        if admitted is False:
            why = f"not attempted: {self.breaker.reason}"
            copy.future.set_result(Result(TEMPORARY, why, halt=True))
            return False
        copy.limit = 1 if admitted else self.retries + 1  # a probe is tried once
        return True

    def hand_back(self, copy: Copy) -> None:
        """A copy not sent goes back to the head of the queue for any connection."""
        if self.closing:
            self.stopped(copy)
        else:
            self.queue.appendleft(copy)

    def stopped(self, copy: Copy, result: Result = STOPPED) -> None:
        if not copy.future.done():
            copy.future.set_result(result)

    def close(self) -> None:
        """Settle every copy still waiting as not attempted."""
        self.closing = True
        for copy in [*self.queue, *self._later]:
            self.stopped(copy)
        self.queue.clear()
        self._later.clear()

    def outcome(self, copy: Copy, result: Result, failed: bool = False) -> None:
        """One try of copy came to result: settle it, or try again after a backoff (a
        connection that failed, `failed`, rests as long before it is opened again)."""
        copy.tries += 1
        if result.outcome != TEMPORARY or copy.tries >= copy.limit or self.closing:
            copy.future.set_result(settled(self.breaker, result, copy.tries))
            return
        wait = self.backoff.delay(copy.tries - 1, result.retry_after)
        log.info("%s: %s; retrying in %.1f s", copy.recipient, result.detail, wait)
        if result.throttled and self.bucket:
            # Throttling is about the account, not this recipient: hold everyone.
            self.bucket.pause(wait)
            self.queue.appendleft(copy)
        elif failed:
            # Another connection tries the copy now; this one rests.
            self._resting.append(self._clock() + wait)
            self.queue.appendleft(copy)
        else:
            copy.due = self._clock() + wait
            self._later.append(copy)
