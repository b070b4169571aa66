"""Crash safety of delivery: `routemail run` killed with SIGKILL and run again."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from routemail.transports.parallel import IN_FLIGHT_PER_SENDER
from routemail.transports.smtp_pool import IN_FLIGHT_PER_CONNECTION
from tests.conftest import Project, free_port
from tests.mailbox import recipients
from tests.ses_front import prepare_moto, running_front
from tests.smtp_sink import Received
from tests.smtp_sink import Sink as PipeliningSink

# Every other local part has capitals: local parts compare as written.
RECIPIENTS = [f"{'Member' if n % 2 else 'member'}{n:03d}@example.com" for n in range(500)]
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
SENDERS = 4  # SMTP connections, SES calls in flight


@dataclass
class Sink:
    """An SMTP server on loopback counting the copies each recipient got."""

    copies: Counter[str] = field(default_factory=Counter)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.copies.update(envelope.rcpt_tos)
        return "250 OK"


@dataclass
class Delivery:
    """How the test sees copies leave: a transport's settings, a copy counter, and how
    many copies a run may have handed over and not yet recorded (each a possible
    duplicate when the run is killed)."""

    settings: str
    copies: Callable[[], Counter[str]]
    in_flight: int = 1
    kills: int = 12  # points at which a run is killed


@pytest.fixture(params=["outbox", "smtp", "smtp-pipelining", "ses"])
def delivery(request: pytest.FixtureRequest, project: Project) -> Iterator[Delivery]:
    """The outbox Maildir, a real SMTP server on loopback (4 connections), one that
    offers PIPELINING (each copy's commands go out with the content before it), or
    moto's SES behind a counting front (4 calls in flight)."""
    if request.param == "outbox":
        yield Delivery("", lambda: recipients(project.data_dir, "Crash test"))
    elif request.param == "smtp":
        yield from smtp_delivery()
    elif request.param == "smtp-pipelining":
        yield from pipelining_delivery()
    else:
        yield from ses_delivery(request.getfixturevalue("moto_url"))


def smtp_delivery() -> Iterator[Delivery]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield Delivery(
            f'transport = "smtp"\n[delivery.smtp]\nhost = "127.0.0.1"\n'
            f'port = {controller.port}\ntls = "none"\nconnections = {SENDERS}\n',
            lambda: Counter(sink.copies),
            IN_FLIGHT_PER_CONNECTION * SENDERS,
        )
    finally:
        controller.stop()


def pipelining_delivery() -> Iterator[Delivery]:
    copies: Counter[str] = Counter()
    lock = threading.Lock()

    def count(message: Received) -> None:
        with lock:
            copies.update(message.recipients)

    def counted() -> Counter[str]:
        with lock:
            return Counter(copies)

    with PipeliningSink(keep=False, on_message=count) as sink:
        yield Delivery(
            f'transport = "smtp"\n[delivery.smtp]\nhost = "127.0.0.1"\n'
            f'port = {sink.port}\ntls = "none"\nconnections = {SENDERS}\n',
            counted,
            IN_FLIGHT_PER_CONNECTION * SENDERS,
        )
    # Copies went out announced (their MAIL came in the read that ended the copy
    # before): a connection announces whenever a copy waits for it, which here,
    # with the router as busy as the server, is a good share of them.
    assert sink.announced > len(RECIPIENTS) // 10


def ses_delivery(moto_url: str) -> Iterator[Delivery]:
    prepare_moto(moto_url)
    with running_front(moto_url) as front:
        yield Delivery(
            f'transport = "ses"\n[delivery.ses]\nendpoint_url = "{front.url}"\n'
            f"concurrency = {SENDERS}\n",
            lambda: Counter(front.accepted),
            IN_FLIGHT_PER_SENDER * SENDERS,
            kills=6,  # each restart imports boto3: fewer, to keep the test quick
        )


def big_list_config(base: str, transport: str) -> str:
    members = ",\n  ".join(f'"{a}"' for a in RECIPIENTS)
    return (
        base
        + f'\n[lists.everyone]\nposters = "anyone"\nmembers = [\n  {members}\n]\n'
        + f"\n[delivery]\nrate = 100000\n{transport}\n"
    )


def start_run(project: Project) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "routemail", "run", "--quiet"],
        env=project.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_at(project: Project, delivery: Delivery, target: int) -> bool:
    """Start a run and SIGKILL it once target copies have left; False if it finished first."""
    proc = start_run(project)
    while proc.poll() is None:
        if sum(delivery.copies().values()) >= target:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    return False


def kill_until_done(project: Project, delivery: Delivery, msg_id: str, rng: random.Random) -> int:
    """Kill runs at rising points of the delivery, then run to the end; the kills."""
    kills = 0
    for target in sorted(rng.sample(range(10, len(RECIPIENTS) - 10), delivery.kills)):
        kills += kill_at(project, delivery, target)
    while project.spool.is_pending(msg_id):
        assert start_run(project).wait(timeout=120) == 0
    return kills


def test_killed_runs_never_duplicate_beyond_kills(project: Project, delivery: Delivery) -> None:
    """After SIGKILLs at many points of a 500-recipient delivery and a final complete
    run, every recipient has a copy, and duplicates never exceed the copies a run may
    have in flight times the number of kills."""
    project.write_config(big_list_config(project.config_path.read_text(), delivery.settings))
    raw = (
        b"From: Ann <ann@example.com>\nTo: everyone@lists.example.org\n"
        b"Subject: Crash test\nMessage-ID: <crash@example.com>\n\n" + b"x" * 20000 + b"\n"
    )
    msg_id = project.spool.receive(raw, ["everyone@lists.example.org"], PASSING).id
    kills = kill_until_done(project, delivery, msg_id, random.Random(1234))
    copies = delivery.copies()
    assert set(copies) == set(RECIPIENTS)
    duplicates = sum(n - 1 for n in copies.values())
    print(f"{kills} kills, {duplicates} duplicate copies")
    assert duplicates <= delivery.in_flight * kills
    assert kills >= delivery.kills // 2, "the delivery finished before it was interrupted; grow it"
    sent = Counter(e.fields[0] for e in project.spool.history(msg_id).events if e.code == "S")
    assert set(sent) == set(RECIPIENTS)
