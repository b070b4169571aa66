"""Pacing for every transport: a token bucket, backoff before in-run retries, a circuit breaker.

Each is shared by every sender of a run (routemail.transports.parallel), so each
takes a lock around its few lines of bookkeeping and never sleeps while holding it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from routemail.transports import TEMPORARY, Result

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """Hands out one token per copy at `rate` tokens a second, `capacity` at most banked.

    The balance may go negative: a caller who takes a token it does not have
    sleeps until the debt is paid. Sleeping overshoots by a little; the
    overshoot is refilled on the next call, so the long-run rate does not
    drift below `rate` the way "sleep 1/rate after each send" would. Senders in
    several threads each reserve their turn under the lock and sleep outside it, so
    together they go out at `rate`, not `rate` each.
    """

    def __init__(
        self,
        rate: float,
        capacity: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self._clock = clock
        self._sleep = sleep
        # Start with one token, not a full bucket: no burst at the start of a run.
        self._tokens = 1.0
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> float:
        """Take one token, sleeping if none is banked; returns the seconds slept."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            wait = -self._tokens / self.rate
        self._sleep(wait)
        return wait

    def take_at_once(self) -> bool:
        """Take one token if one is banked now; never waits."""
        with self._lock:
            self._refill()
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def wait_time(self) -> float:
        """Seconds until a token is banked (0 when one is): how long a caller that
        never sleeps in take() may wait for its next copy."""
        with self._lock:
            self._refill()
            return max(0.0, (1.0 - self._tokens) / self.rate)

    def pause(self, seconds: float) -> None:
        """Empty the bucket so nothing else goes out for `seconds` (after throttling)."""
        with self._lock:
            self._refill()
            self._tokens = min(0.0, self._tokens) - seconds * self.rate


class Backoff:
    """The wait before an in-run retry: exponential, jittered, capped."""

    def __init__(self, first: float, most: float, rng: random.Random | None = None) -> None:
        self.first = first
        self.most = most
        self._rng = rng or random.Random()
        self._lock = threading.Lock()  # random.Random is not safe to share between threads

    def delay(self, retry: int, asked: float | None = None) -> float:
        """The wait before retry number `retry` (0-based), at least what the next hop asked."""
        ceiling = min(self.most, self.first * (2**retry))
        # "Equal jitter": never less than half the ceiling, so retries do back off,
        # but spread so parallel senders do not hit the next hop in lockstep.
        with self._lock:
            wait = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return max(wait, asked or 0.0)


class Breaker:
    """Open while the next hop takes no mail at all (unreachable, paused, refusing our
    login): copies are then not attempted, and one probes after `cooldown` seconds.

    It guards the relay (or SES) as a whole, whichever sender saw it fail.
    """

    def __init__(self, cooldown: float, clock: Clock = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._open_until: float | None = None
        self.reason = ""
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def admit(self) -> bool | None:
        """None: go ahead. True: go ahead as the one probe. False: do not try."""
        with self._lock:
            if self._open_until is None:
                return None
            if self._clock() < self._open_until:
                return False
            # This sender probes; the others keep waiting until it has an answer.
            self._open_until = self._clock() + self.cooldown
            return True

    def trip(self, reason: str) -> None:
        with self._lock:
            self._open_until = self._clock() + self.cooldown
            self.reason = reason

    def reset(self) -> None:
        """Any answer other than "takes no mail" means the next hop is there and talking."""
        with self._lock:
            self._open_until = None


def settled(breaker: Breaker, result: Result, tries: int) -> Result:
    """The last try's result as the copy's outcome: a failure that says the next hop
    takes nothing trips the breaker, anything else resets it; a temporary failure
    says how many tries this run made."""
    if result.outcome == TEMPORARY and result.halt:
        breaker.trip(result.detail)
    else:
        breaker.reset()
    if result.outcome == TEMPORARY and tries > 1:
        result = replace(result, detail=f"{result.detail} ({tries} tries this run)")
    return result
