"""Pacing: the token bucket's achieved rate, in-run retries with backoff, the circuit breaker."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from routemail import config as configuration
from routemail.transports import PERMANENT, SENT, TEMPORARY, Result, open_transport
from routemail.transports.pacing import TokenBucket
from routemail.transports.parallel import Paced
from tests.conftest import BASE_CONFIG, Project

RATE = 50.0
SENDS = 300


@dataclass
class FakeTime:
    """A clock that only moves when slept on."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Scripted:
    """A next hop that answers from a script, then SENT; it records every call."""

    script: list[Result] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        self.calls.append(recipient)
        return self.script.pop(0) if self.script else Result(SENT, "ok")

    def close(self) -> None:
        pass


def measure_rate(project: Project) -> tuple[float, float, float]:
    """Sends SENDS copies through the configured outbox; returns (rate, wall, cpu)."""
    transport = open_transport(configuration.load(project.config_path), project.spool)
    stamps = []
    cpu = time.process_time()
    try:
        for i in range(SENDS):
            result = transport.send("b@lists.example.org", f"m{i}@example.com", b"x\n", {})
            assert result.sent, result.detail
            stamps.append(time.monotonic())
    finally:
        transport.close()
    wall = stamps[-1] - stamps[0]
    return (SENDS - 1) / wall, wall, time.process_time() - cpu


def test_achieved_rate_is_within_five_percent_of_delivery_rate(project: Project) -> None:
    """With delivery.rate = 50 the outbox receives copies at 50 a second (within 5%, first to
    last send over 300 sends), and the pacer sleeps rather than spinning."""
    project.write_config(BASE_CONFIG + f"\n[delivery]\nrate = {RATE}\n")
    # A loaded machine can stall one run for longer than the bucket's catch-up allowance;
    # such a run is measured again rather than failing the pacing it did not test.
    for _ in range(3):
        rate, wall, cpu = measure_rate(project)
        if abs(rate - RATE) <= 0.05 * RATE:
            break
    assert abs(rate - RATE) <= 0.05 * RATE, f"{rate:.2f}/s over {wall:.2f}s"
    assert cpu < 0.5 * wall, f"{cpu:.2f}s of CPU in {wall:.2f}s: busy-waiting"
    assert len(list((project.spool.root / "outbox" / "new").iterdir())) >= SENDS


def test_bucket_paces_from_the_first_token_without_a_burst() -> None:
    """The first copy goes at once, each later one 1/rate after the one before; a pause
    (after throttling) holds the next token back by that long."""
    t = FakeTime()
    bucket = TokenBucket(10.0, capacity=1.0, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        bucket.take()
    assert t.now - 1000.0 == pytest.approx(0.4)
    bucket.pause(2.0)
    bucket.take()
    assert t.now - 1000.0 == pytest.approx(0.4 + 2.0 + 0.1)


def test_bucket_catches_up_after_a_slow_send_only_within_its_capacity() -> None:
    """Time lost to a slow send is made up by at most `capacity` tokens, never a big burst."""
    t = FakeTime()
    bucket = TokenBucket(10.0, capacity=3.0, clock=t.clock, sleep=t.sleep)
    bucket.take()
    t.now += 5.0  # a send that took five seconds
    waits = [bucket.take() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1)


def test_temporary_failures_back_off_exponentially_with_jitter() -> None:
    """Each retry waits between half and all of backoff * 2**n (capped), at least what the
    next hop asked for, and the copy is retried `retries` times before being TEMPORARY."""
    t = FakeTime()
    inner = Scripted([Result(TEMPORARY, "451 busy")] * 10)
    paced = Paced(
        inner,
        None,
        retries=4,
        backoff=1.0,
        max_backoff=5.0,
        clock=t.clock,
        sleep=t.sleep,
        rng=random.Random(7),
    )
    result = paced.send("s", "ann@example.com", b"", {})
    assert result.outcome == TEMPORARY and result.detail == "451 busy (5 tries this run)"
    assert len(inner.calls) == 5
    for n, wait in enumerate(t.slept):
        ceiling = min(5.0, 2.0**n)
        assert ceiling / 2 <= wait <= ceiling
    assert len(set(t.slept)) == len(t.slept)
    assert paced.delay(0, asked=9.0) == 9.0


def test_permanent_failure_is_not_retried() -> None:
    """A PERMANENT answer comes back at once, with no retry and no wait."""
    t = FakeTime()
    inner = Scripted([Result(PERMANENT, "550 no such user")])
    paced = Paced(inner, None, retries=3, clock=t.clock, sleep=t.sleep)
    assert paced.send("s", "x@example.com", b"", {}).outcome == PERMANENT
    assert inner.calls == ["x@example.com"] and t.slept == []


def test_breaker_opens_on_a_dead_next_hop_and_probes_after_max_backoff() -> None:
    """After a halting failure outlasts its retries, copies are TEMPORARY without a call;
    once max_backoff has passed one copy probes, and a success closes the breaker."""
    t = FakeTime()
    down = Result(TEMPORARY, "connection refused", halt=True)
    inner = Scripted([down] * 3)
    paced = Paced(
        inner, None, retries=2, backoff=0.1, max_backoff=10.0, clock=t.clock, sleep=t.sleep
    )
    assert paced.send("s", "a@x.org", b"", {}).outcome == TEMPORARY
    assert len(inner.calls) == 3
    skipped = paced.send("s", "b@x.org", b"", {})
    assert skipped.outcome == TEMPORARY and skipped.detail.startswith("not attempted:")
    assert len(inner.calls) == 3
    t.now += 10.0
    assert paced.send("s", "c@x.org", b"", {}).outcome == SENT
    assert paced.send("s", "d@x.org", b"", {}).outcome == SENT
    assert inner.calls[3:] == ["c@x.org", "d@x.org"]


def test_throttling_holds_every_copy_back() -> None:
    """A throttled answer pauses the bucket, so the retry and the copies after it wait."""
    t = FakeTime()
    inner = Scripted([Result(TEMPORARY, "454 throttled", throttled=True)])
    paced = Paced(
        inner,
        100.0,
        retries=1,
        backoff=2.0,
        max_backoff=2.0,
        clock=t.clock,
        sleep=t.sleep,
        rng=random.Random(1),
    )
    assert paced.send("s", "a@x.org", b"", {}).outcome == SENT
    assert 1.0 <= t.now - 1000.0 <= 2.0 + 0.02
    assert inner.calls == ["a@x.org", "a@x.org"]


def test_retry_settings_are_validated_with_the_line(project: Project) -> None:
    """Bad retry settings and rate = "auto" without SES are reported with their key."""
    project.write_config(
        BASE_CONFIG + '\n[delivery]\nrate = "auto"\nretries = -1\nbackoff_seconds = 0\n'
    )
    with pytest.raises(configuration.ConfigError) as caught:
        configuration.load(project.config_path)
    text = str(caught.value)
    assert 'delivery.rate: "auto" reads the SES sending quota' in text
    assert "delivery.retries: expected 0 or more" in text
    assert "delivery.backoff_seconds: expected a positive number" in text


def test_breaker_stops_every_sender_of_a_dead_relay() -> None:
    """With four senders and a relay that takes nothing, the breaker opens for the relay
    as a whole: after the first copy's retries the other copies are not attempted, so
    the relay sees far fewer calls than there are copies."""
    down = Result(TEMPORARY, "connection refused", halt=True)
    sessions: list[Scripted] = []

    def session() -> Scripted:
        sessions.append(Scripted([down] * 1000))
        return sessions[-1]

    paced = Paced(
        session(), None, another=session, senders=4, retries=2, backoff=0.01, max_backoff=60.0
    )
    try:
        futures = [paced.submit("s", f"m{n}@x.org", b"", {}) for n in range(40)]
        results = [f.result(timeout=30) for f in futures]
    finally:
        paced.close()
    assert all(r.outcome == TEMPORARY and r.halt for r in results)
    assert sum(r.detail.startswith("not attempted:") for r in results) >= 30
    assert 1 < len(sessions) <= 4
    assert sum(len(s.calls) for s in sessions) < 20
    assert paced.circuit_open


@dataclass
class Timed(Scripted):
    """A next hop whose every call takes `latency` on a FakeTime clock."""

    time: FakeTime = field(default_factory=FakeTime)
    latency: float = 0.05

    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        self.time.now += self.latency
        return super().send(sender, recipient, message, tags)


def test_adaptive_senders_leave_room_for_slow_calls() -> None:
    """concurrency = "auto": up to four senders before any call is back; then half
    as many again as rate x latency needs, plus one (9 at 100/s and 50 ms), within
    the bound; without a rate, the bound."""
    fake = FakeTime()
    paced = Paced(
        Timed(time=fake),
        100.0,
        another=lambda: Timed(time=fake),
        senders=16,
        adaptive=True,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    try:
        assert paced.senders == 4
        assert paced.send("s", "m@x.org", b"", {}).sent
        assert paced.senders == 9
        assert paced.in_flight == 18
    finally:
        paced.close()
    fixed = Paced(Timed(time=fake), 100.0, another=lambda: Timed(time=fake), senders=3)
    assert fixed.senders == 3
    fixed.close()
