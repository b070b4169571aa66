"""Several copies in flight at once: senders with a session each, one pace for all.

SES and the outbox are used through Paced (SMTP through smtp_pool, which needs no
threads). Each of its senders is a thread owning
its own session (one SMTP connection, one boto3 client, the outbox's one
writer), and takes copies from one queue. All of them share one token bucket,
so `delivery.rate` stays a site-wide cap; one backoff; and one circuit breaker,
so a relay or SES that takes no mail stops every sender. A sender whose session
fails puts its copy back at the head of the queue for another sender and rests
before taking the next one.

The caller hands a copy over with submit(), gets a Future, and records the
outcome itself when the Future is done: only the caller writes sidecar lines.
send() is submit() and wait, for a single notice.

How many senders: a fixed number (`[delivery.smtp] connections`, a fixed
`[delivery.ses] concurrency`), or, when adaptive, as many as `rate` needs at
the latency observed so far with some to spare (HEADROOM times rate times seconds
per call, plus one), up to a bound.
A sender is started only when a copy waits and no sender is idle.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future

from routemail.transports import TEMPORARY, Handed, Result, Transport
from routemail.transports.pacing import Backoff, Breaker, Clock, Sleep, TokenBucket, settled

log = logging.getLogger(__name__)

# Copies handed over but not yet recorded, per sender: one being sent, one
# waiting, so a sender never idles while the caller builds the next copy.
IN_FLIGHT_PER_SENDER = 2
LATENCY_WEIGHT = 0.2  # of each new call in the running mean of call latency
# Adaptive senders: rate x latency is what the mean call needs, but a sender also
# spends time between calls (its copy's outcome, the next copy, waiting for a core)
# and calls vary, so exactly that many fall behind `rate` whenever one is slow; the
# token bucket, not the number of senders, is what keeps the run to `rate`.
HEADROOM = 1.5
# Before any call has come back, a run with copies waiting starts this many.
FIRST_SENDERS = 4


class Paced:
    """Wraps a transport: paced sends from one or more senders, temporary failures
    retried within the run, a circuit breaker for the next hop as a whole.

    A TEMPORARY result is retried up to `retries` times, waiting an exponentially
    growing, jittered delay (at least what the next hop asked for). When the last
    attempt still says the next hop takes no mail at all (`halt`: unreachable,
    paused, refused our login), the breaker opens: later copies return TEMPORARY
    at once without a connection attempt, and one copy probes again after
    `max_backoff` seconds. A run over a dead server thus costs seconds, not one
    full backoff per recipient.
    """

    def __init__(
        self,
        inner: Transport,
        rate: float | None,
        *,
        another: Callable[[], Transport] | None = None,
        senders: int = 1,
        adaptive: bool = False,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._stopped = threading.Event()
        # Waits end early when the run closes the transport: a sender resting after
        # its session failed holds no copy, and the run need not wait for it.
        sleep = sleep or self._nap
        self.rate = rate
        # A tenth of a second's worth of tokens lets pacing catch up after a slow
        # send without a burst that a per-second quota would notice.
        self.bucket = (
            TokenBucket(rate, capacity=rate / 10, clock=clock, sleep=sleep) if rate else None
        )
        self.retries = retries
        self.backoff = Backoff(backoff, max_backoff, rng)
        self.breaker = Breaker(max_backoff, clock)
        self.most = senders if another else 1
        self.adaptive = adaptive
        self._another = another
        self._clock = clock
        self._sleep = sleep
        self._spare = [inner]  # sessions no sender owns yet
        self._sessions = [inner]
        self._threads: list[threading.Thread] = []
        self._queue: deque[Handed] = deque()
        self._idle = 0
        self._closing = False
        self._latency: float | None = None
        self._lock = threading.Condition()

    # -- for the caller ----------------------------------------------------------

    def submit(
        self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]
    ) -> Future[Result]:
        """Queue one copy; its Future gives the Result once it is settled."""
        copy = Handed(sender, recipient, message, tags)
        with self._lock:
            if self._closing:
                raise RuntimeError("submit after close")
            self._queue.append(copy)
            if len(self._queue) > self._idle and len(self._threads) < self.senders:
                self._start_sender()
            self._lock.notify()
        return copy.future

    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        return self.submit(sender, recipient, message, tags).result()

    @property
    def senders(self) -> int:
        """How many senders the run wants now."""
        if not self.adaptive:
            return self.most
        if self._latency is None:
            return min(self.most, FIRST_SENDERS)
        if self.rate is None:
            return self.most
        wanted = math.ceil(self.rate * self._latency * HEADROOM) + 1
        return max(1, min(self.most, wanted))

    @property
    def in_flight(self) -> int:
        """How many copies a caller should have handed over and not yet recorded."""
        return IN_FLIGHT_PER_SENDER * self.senders

    @property
    def circuit_open(self) -> bool:
        """Whether the last copies found the next hop taking nothing (see above)."""
        return self.breaker.is_open

    def delay(self, retry: int, asked: float | None = None) -> float:
        return self.backoff.delay(retry, asked)

    def close(self) -> None:
        """Stop the senders (copies still queued are not sent) and close every session."""
        with self._lock:
            self._closing = True
            for copy in self._queue:
                copy.future.set_result(Result(TEMPORARY, "not attempted: the run stopped"))
            self._queue.clear()
            self._lock.notify_all()
        self._stopped.set()
        for thread in self._threads:
            thread.join()
        for session in self._sessions:
            session.close()

    # -- the senders -------------------------------------------------------------

    def _nap(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    def _start_sender(self) -> None:
        """Called with the lock held: one more sender, with a session of its own."""
        if self._spare:
            session = self._spare.pop()
        else:
            assert self._another is not None
            try:
                session = self._another()
            except Exception as exc:  # the senders already running carry on
                log.warning("cannot open another session: %s", exc)
                self.most = len(self._threads)
                return
            self._sessions.append(session)
        thread = threading.Thread(
            target=self._run, args=(session,), name=f"sender-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _next(self) -> Handed | None:
        with self._lock:
            self._idle += 1
            while not self._queue and not self._closing:
                self._lock.wait()
            self._idle -= 1
            return None if self._closing else self._queue.popleft()

    def _run(self, session: Transport) -> None:
        while (copy := self._next()) is not None:
            try:
                self._deliver(session, copy)
            except BaseException as exc:  # a bug in a transport must not hang the caller
                if not copy.future.done():
                    copy.future.set_exception(exc)
            # Not kept while waiting for the next one: with a big post, each idle
            # sender would hold a whole copy the run is done with.
            del copy

    def _deliver(self, session: Transport, copy: Handed) -> None:
        """Try one copy until it is settled, or hand it back to the queue."""
        while True:
            admitted = self.breaker.admit()
            if admitted is False:
                why = f"not attempted: {self.breaker.reason}"
                copy.future.set_result(Result(TEMPORARY, why, halt=True))
                return
            limit = 1 if admitted else self.retries + 1  # a probe is tried once
            if self.bucket:
                self.bucket.take()
            result = self._timed(session, copy)
            copy.tries += 1
            if result.outcome != TEMPORARY or copy.tries >= limit:
                copy.future.set_result(self._settled(copy, result))
                return
            wait = self.delay(copy.tries - 1, result.retry_after)
            log.info("%s: %s; retrying in %.1f s", copy.recipient, result.detail, wait)
            if result.throttled and self.bucket:
                # Throttling is about the account, not this recipient: hold everyone.
                self.bucket.pause(wait)
            elif result.halt:
                # This session failed: another sender tries the copy now, this one rests.
                with self._lock:
                    if not self._closing:
                        self._queue.appendleft(copy)
                        self._lock.notify()
                    else:
                        copy.future.set_result(self._settled(copy, result))
                self._sleep(wait)
                return
            else:
                self._sleep(wait)

    def _timed(self, session: Transport, copy: Handed) -> Result:
        started = self._clock()
        result = session.send(copy.sender, copy.recipient, copy.message, copy.tags)
        took = self._clock() - started
        with self._lock:
            old = self._latency
            self._latency = took if old is None else old + LATENCY_WEIGHT * (took - old)
        return result

    def _settled(self, copy: Handed, result: Result) -> Result:
        return settled(self.breaker, result, copy.tries)
