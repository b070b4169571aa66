"""Pacing for every transport: a token bucket, in-run retries with backoff, a circuit breaker."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from routemail.transports import TEMPORARY, Result, Transport

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """Hands out one token per copy at `rate` tokens a second, `capacity` at most banked.

    The balance may go negative: a caller who takes a token it does not have
    sleeps until the debt is paid. Sleeping overshoots by a little; the
    overshoot is refilled on the next call, so the long-run rate does not
    drift below `rate` the way "sleep 1/rate after each send" would.
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

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> float:
        """Take one token, sleeping if none is banked; returns the seconds slept."""
        self._refill()
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.rate
        self._sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Empty the bucket so nothing else goes out for `seconds` (after throttling)."""
        self._refill()
        self._tokens = min(0.0, self._tokens) - seconds * self.rate


class Paced:
    """Wraps a transport: paced sends, temporary failures retried within the run.

    A TEMPORARY result is retried up to `retries` times, waiting an
    exponentially growing, jittered delay (at least what the next hop asked
    for). When the last attempt still says the next hop takes no mail at all
    (`halt`: unreachable, paused, refused our login), the breaker opens: later
    copies return TEMPORARY at once without a connection attempt, and one copy
    probes again after `max_backoff` seconds. A run over a dead server thus
    costs seconds, not one full backoff per recipient.
    """

    def __init__(
        self,
        inner: Transport,
        rate: float | None,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.rate = rate
        # A tenth of a second's worth of tokens lets pacing catch up after a slow
        # send without a burst that a per-second quota would notice.
        self.bucket = (
            TokenBucket(rate, capacity=rate / 10, clock=clock, sleep=sleep) if rate else None
        )
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._open_until: float | None = None
        self._open_reason = ""

    def delay(self, retry: int, asked: float | None = None) -> float:
        """The wait before retry number `retry` (0-based): exponential, jittered, capped."""
        ceiling = min(self.max_backoff, self.backoff * (2**retry))
        # "Equal jitter": never less than half the ceiling, so retries do back off,
        # but spread so parallel senders do not hit the next hop in lockstep.
        wait = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return max(wait, asked or 0.0)

    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        probing = False
        if self._open_until is not None:
            if self._clock() < self._open_until:
                return Result(TEMPORARY, f"not attempted: {self._open_reason}", halt=True)
            probing = True
        attempts = 1 if probing else self.retries + 1
        result = Result(TEMPORARY, "not attempted")
        for attempt in range(attempts):
            if self.bucket:
                self.bucket.take()
            result = self.inner.send(sender, recipient, message, tags)
            if result.outcome != TEMPORARY:
                break
            if attempt + 1 < attempts:
                wait = self.delay(attempt, result.retry_after)
                log.info("%s: %s; retrying in %.1f s", recipient, result.detail, wait)
                if result.throttled and self.bucket:
                    # Throttling is about the account, not this recipient: hold everyone.
                    self.bucket.pause(wait)
                else:
                    self._sleep(wait)
        if result.outcome == TEMPORARY and attempts > 1:
            result = replace(result, detail=f"{result.detail} ({attempts} tries this run)")
        if result.outcome == TEMPORARY and result.halt:
            self._open_until = self._clock() + self.max_backoff
            self._open_reason = result.detail
        else:
            # Any other answer means the next hop is there and talking.
            self._open_until = None
        return result

    @property
    def circuit_open(self) -> bool:
        """Whether the last copies found the next hop taking nothing (see above)."""
        return self._open_until is not None

    def close(self) -> None:
        self.inner.close()
