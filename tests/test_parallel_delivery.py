"""Parallel delivery: several SMTP connections or SES calls at once, one pace, one record."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from routemail import config as configuration
from routemail import delivery
from routemail.run import run
from tests.conftest import BASE_CONFIG, Project
from tests.ses_front import prepare_moto, running_front
from tests.smtp_relay import Recorder, relay_for

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
MEMBERS = [f"member{n:02d}@example.com" for n in range(40)]


def everyone(members: list[str]) -> str:
    listed = ", ".join(f'"{m}"' for m in members)
    return f'\n[lists.everyone]\nposters = "anyone"\nmembers = [{listed}]\n'


def post(project: Project, subject: str = "Parallel") -> str:
    raw = (
        f"From: Ann <ann@example.com>\nTo: everyone@lists.example.org\nSubject: {subject}\n"
        f"Message-ID: <{subject.lower()}@example.com>\n\nHello.\n"
    ).encode()
    return project.spool.receive(raw, ["everyone@lists.example.org"], PASSING).id


def run_once(project: Project) -> None:
    report = run(configuration.load(project.config_path), project.spool)
    assert not report.errors, report.errors


def sidecar_codes(project: Project, msg_id: str) -> Counter[str]:
    return Counter(e.code for e in project.spool.history(msg_id).events)


@dataclass
class Overlapping(Recorder):
    """A Recorder whose DATA takes a moment, noting how many were being answered at
    once and which connections it had seen when it dropped one."""

    in_data: int = 0
    most_in_data: int = 0
    peers: set[Any] = field(default_factory=set)
    peers_before_drop: set[Any] = field(default_factory=set)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.add(session.peer)
        first = envelope.rcpt_tos[0]
        if first.startswith("drop") and not self.data_attempts[first]:
            self.peers_before_drop = set(self.peers)
        self.in_data += 1
        self.most_in_data = max(self.most_in_data, self.in_data)
        try:
            await asyncio.sleep(0.01)  # the relay's own latency, so transactions overlap
        finally:
            self.in_data -= 1
        return await super().handle_DATA(server, session, envelope)


def test_copies_go_out_over_several_connections_at_once(project: Project) -> None:
    """With connections = 4 several transactions are open at once on up to four
    connections; every member gets one copy and has an S line."""
    relay = Overlapping()
    with relay_for(project, lists=everyone(MEMBERS), smtp="connections = 4", handler=relay):
        msg_id = post(project)
        run_once(project)
    got = Counter(r for m in relay.messages for r in m.recipients)
    assert got == Counter(MEMBERS)
    assert relay.most_in_data > 1
    assert 1 < len(relay.peers) <= 4
    assert sidecar_codes(project, msg_id)["S"] == len(MEMBERS)
    assert not project.spool.is_pending(msg_id)


def test_one_connection_sends_one_copy_at_a_time(project: Project) -> None:
    """connections = 1 keeps delivery to one connection and one transaction at a time."""
    relay = Overlapping()
    with relay_for(project, lists=everyone(MEMBERS), smtp="connections = 1", handler=relay):
        post(project)
        run_once(project)
    assert Counter(r for m in relay.messages for r in m.recipients) == Counter(MEMBERS)
    assert relay.most_in_data == 1 and len(relay.peers) == 1


def test_a_failing_session_hands_its_copy_to_another(project: Project) -> None:
    """A connection lost in the middle of a copy's DATA: the copy is sent at once on
    another sender's connection (one already open), while the failing sender rests
    out its backoff; the run delivers everything with no failure recorded."""
    members = [*MEMBERS[:20], "drop-me@example.com", *MEMBERS[20:]]
    relay = Overlapping()
    delivery = "backoff_seconds = 20\nmax_backoff_seconds = 20"
    with relay_for(
        project,
        delivery=delivery,
        lists=everyone(members),
        smtp="connections = 4",
        handler=relay,
    ):
        msg_id = post(project)
        run_once(project)
    assert Counter(r for m in relay.messages for r in m.recipients) == Counter(members)
    (dropped,) = [m for m in relay.messages if m.recipients == ["drop-me@example.com"]]
    assert relay.data_attempts["drop-me@example.com"] == 2
    assert dropped.peer in relay.peers_before_drop
    codes = sidecar_codes(project, msg_id)
    assert codes["S"] == len(members) and codes["F"] == 0


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("[delivery.smtp]\nconnections = 0", "delivery.smtp.connections: expected 1 to 64"),
        ("[delivery.smtp]\nconnections = 65", "delivery.smtp.connections: expected 1 to 64"),
        (
            '[delivery.smtp]\nconnections = "4"',
            "delivery.smtp.connections: expected a whole number",
        ),
        (
            '[delivery.ses]\nconcurrency = "lots"',
            "delivery.ses.concurrency: expected 1 to 64 calls or \"auto\", got 'lots'",
        ),
        ("[delivery.ses]\nconcurrency = 0", "delivery.ses.concurrency: expected 1 to 64 calls"),
        (
            "[delivery.ses]\nconcurrency = 2.5",
            'delivery.ses.concurrency: expected 1 to 64 calls or "auto", got 2.5',
        ),
    ],
)
def test_sender_counts_are_validated(project: Project, keys: str, message: str) -> None:
    """A number of connections or calls out of range, or not a number, names the key."""
    project.write_config(BASE_CONFIG + "\n" + keys + "\n")
    with pytest.raises(configuration.ConfigError) as caught:
        configuration.load(project.config_path)
    assert message in str(caught.value)


def test_ses_calls_overlap_behind_a_slow_endpoint(project: Project, moto_url: str) -> None:
    """Behind an endpoint that takes 50 ms a call, concurrency = "auto" at rate = 100 has
    several SendEmail calls in flight at once; every member's copy is accepted once,
    none is throttled, and each has an S line."""
    prepare_moto(moto_url)
    members = [f"member{n:03d}@example.com" for n in range(40)]
    with running_front(moto_url, delay=0.05) as front:
        project.write_config(
            BASE_CONFIG + everyone(members) + f'\n[delivery]\ntransport = "ses"\nrate = 100\n'
            f'[delivery.ses]\nendpoint_url = "{front.url}"\nconcurrency = "auto"\n'
        )
        msg_id = post(project)
        run_once(project)
    assert front.accepted == Counter(members)
    assert front.most_in_flight > 1
    assert front.throttled == 0
    assert sidecar_codes(project, msg_id)["S"] == len(members)


def test_outcomes_back_together_are_each_recorded_and_logged(project: Project) -> None:
    """Outcomes collected at once are written together (one sidecar append, one log
    write): still one S line and one log line per copy, and nothing else."""
    relay = Overlapping()
    with relay_for(project, lists=everyone(MEMBERS), smtp="connections = 4", handler=relay):
        msg_id = post(project)
        run_once(project)
    history = project.spool.history(msg_id)
    sent = [e.fields[0] for e in history.events if e.code == "S"]
    assert sorted(sent) == sorted(MEMBERS)
    logged = [
        line.split()[-1]
        for path in (project.data_dir / "maillist" / "log").iterdir()
        for line in path.read_text().splitlines()
        if f"{msg_id} everyone: sent to" in line
    ]
    assert sorted(logged) == sorted(MEMBERS)


def test_copies_in_flight_are_bounded_by_bytes(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copies bigger than the bound go out one at a time, whatever `connections`
    allows (the same relay sees several at once without the bound, above)."""
    monkeypatch.setattr(delivery, "IN_FLIGHT_BYTES", 1)
    relay = Overlapping()
    with relay_for(project, lists=everyone(MEMBERS), smtp="connections = 4", handler=relay):
        msg_id = post(project)
        run_once(project)
    assert Counter(r for m in relay.messages for r in m.recipients) == Counter(MEMBERS)
    assert relay.most_in_data == 1
    assert sidecar_codes(project, msg_id)["S"] == len(MEMBERS)
