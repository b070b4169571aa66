"""Crash safety of delivery: `routemail run` killed with SIGKILL and run again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from tests.conftest import Project
from tests.mailbox import recipients

# Every other local part has capitals: local parts compare as written.
RECIPIENTS = [f"{'Member' if n % 2 else 'member'}{n:03d}@example.com" for n in range(500)]


def big_list_config(base: str, transport: str = "") -> str:
    members = ",\n  ".join(f'"{a}"' for a in RECIPIENTS)
    return (
        base
        + f"\n[delivery]\nrate = 100000\n{transport}\n"
        + f'[lists.everyone]\nposters = "anyone"\nmembers = [\n  {members}\n]\n'
    )


def start_run(project: Project) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "routemail", "run", "--quiet"],
        env=project.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def outbox_count(project: Project) -> int:
    new = project.data_dir / "maillist" / "outbox" / "new"
    return len(os.listdir(new)) if new.exists() else 0


def kill_at(project: Project, target: int) -> bool:
    """Start a run and SIGKILL it once the outbox holds target copies; False if it
    finished first."""
    proc = start_run(project)
    while proc.poll() is None:
        if outbox_count(project) >= target:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    return False


def kill_until_done(project: Project, msg_id: str, rng: random.Random) -> int:
    """Kill runs at rising points of the delivery, then run to the end; the kills."""
    kills = 0
    for target in sorted(rng.sample(range(10, len(RECIPIENTS) - 10), 12)):
        kills += kill_at(project, target)
    while project.spool.is_pending(msg_id):
        assert start_run(project).wait(timeout=120) == 0
    return kills


def test_killed_runs_never_duplicate_beyond_kills(project: Project) -> None:
    """After SIGKILLs at many points of a 500-recipient delivery and a final complete
    run, every recipient has a copy and duplicates never exceed the number of kills."""
    project.write_config(big_list_config(project.config_path.read_text()))
    raw = (
        b"From: Ann <ann@example.com>\nTo: everyone@lists.example.org\n"
        b"Subject: Crash test\nMessage-ID: <crash@example.com>\n\n" + b"x" * 20000 + b"\n"
    )
    passing = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
    msg_id = project.spool.receive(raw, ["everyone@lists.example.org"], passing).id
    kills = kill_until_done(project, msg_id, random.Random(1234))
    copies = recipients(project.data_dir, "Crash test")
    assert set(copies) == set(RECIPIENTS)
    duplicates = sum(n - 1 for n in copies.values())
    print(f"{kills} kills, {duplicates} duplicate copies")
    assert duplicates <= kills
    assert kills >= 3, "the delivery finished before it could be interrupted; grow it"
    sent = Counter(e.fields[0] for e in project.spool.history(msg_id).events if e.code == "S")
    assert set(sent) == set(RECIPIENTS)
