"""Priority benchmark: how long a transactional message waits behind a list's fan-out.

A 10,000-member list post is being sent through the outbox at `rate = 50` (200 s
for the whole fan-out). Once it is under way, a password-reset message is queued
as `routemail send` queues it, and the bench measures the seconds from queuing
to the copy being written. Two ways, in the same run:

- routemail now: `routemail run` as a subprocess; the fan-out is stopped (the
  run killed) once the figure is taken.
- the baseline, routemail before priorities: the same routing in this process
  with the priority look switched off, so the message leaves only when the
  fan-out has ended and the run scans again, as it did before.

    .venv/bin/python bench/priority.py [--members 10000] [--rate 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routemail import config as configuration
from routemail import outgoing
from routemail.actionlog import ActionLog
from routemail.route import Router
from routemail.spool import Spool

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
HEAD_START = 100  # fan-out copies written before the transactional message is queued
CONFIG = """\
[site]
domain = "lists.example.org"
admin = "admin@example.org"

[receiver]
on_receipt = "none"

[delivery]
rate = {rate}

[lists.everyone]
posters = "anyone"
members = [{members}]
"""
POST = (
    b"From: Ann <ann@example.com>\nTo: everyone@lists.example.org\nSubject: Fan-out\n"
    b"Message-ID: <fan-out-%d@example.com>\n\n" + b"All of you, please read this.\n" * 40
)
RESET = (
    b"From: Lists <no-reply@lists.example.org>\nTo: bob@example.net\n"
    b"Subject: Your password reset\n\nFollow the link within the hour.\n"
)


def site(root: Path, members: int, rate: float) -> tuple[Path, Spool]:
    listed = ", ".join(f'"m{n:05d}@example.com"' for n in range(members))
    config = root / "lists.toml"
    config.write_text(CONFIG.format(rate=rate, members=listed))
    data = root / "data"
    data.mkdir()
    return config, Spool(data / "maillist").ensure()


def outbox_count(spool: Spool) -> int:
    new = spool.root / "outbox" / "new"
    return sum(1 for _ in os.scandir(new)) if new.exists() else 0


def wait_for(condition: object, poll: float = 0.005) -> float:
    """Seconds until condition() is true (polled)."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        time.sleep(poll)
    return time.monotonic() - started


def queue_reset(config: Path, spool: Spool) -> str:
    receipt, _ = outgoing.queue(configuration.load(config), spool, RESET)
    spool.rescan_mark.touch()  # as `routemail send` leaves it when a run is busy
    return receipt.id


def sent(spool: Spool, msg_id: str) -> bool:
    return bool(spool.history(msg_id).sent_to)


def with_priorities(members: int, rate: float, n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config, spool = site(Path(tmp), members, rate)
        spool.receive(POST % n, ["everyone@lists.example.org"], PASSING)
        env = dict(os.environ, ROUTEMAIL_CONFIG=str(config), ROUTEMAIL_DATA=str(Path(tmp) / "data"))
        run = subprocess.Popen(
            [sys.executable, "-m", "routemail", "run", "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: outbox_count(spool) >= HEAD_START)
            msg_id = queue_reset(config, spool)
            return wait_for(lambda: sent(spool, msg_id))
        finally:
            run.kill()
            run.wait()


def before_priorities(members: int, rate: float, n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config, spool = site(Path(tmp), members, rate)
        spool.receive(POST % n, ["everyone@lists.example.org"], PASSING)
        log = ActionLog(spool.root / "log")
        router = Router(configuration.load(config), spool, log)
        router.delivery.priority = None  # routemail before #13's priorities

        def scans() -> None:
            while True:  # run.py's loop: scan, and scan again while the mark is down
                with contextlib.suppress(FileNotFoundError):
                    spool.rescan_mark.unlink()
                for msg_id in spool.pending_ids():
                    router.process(msg_id)
                if not spool.rescan_mark.exists():
                    break
            router.close()  # in this thread, which opened its database

        worker = threading.Thread(target=scans, daemon=True)
        worker.start()
        wait_for(lambda: outbox_count(spool) >= HEAD_START)
        msg_id = queue_reset(config, spool)
        waited = wait_for(lambda: sent(spool, msg_id), poll=0.05)
        worker.join()
        log.close()
        return waited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()}")
    print(f"{args.members} members at rate = {args.rate:g}; the message is queued once")
    print(f"{HEAD_START} fan-out copies are written\n")
    now = [with_priorities(args.members, args.rate, n) for n in range(args.rounds)]
    print("routemail run now: queued -> sent, s:", ", ".join(f"{s:.2f}" for s in now))
    before = [before_priorities(args.members, args.rate, n) for n in range(args.baseline_rounds)]
    print("before priorities: queued -> sent, s:", ", ".join(f"{s:.1f}" for s in before))
    ratio = statistics.median(before) / statistics.median(now)
    print(f"median {statistics.median(now):.2f} s against {statistics.median(before):.1f} s")
    print(f"({ratio:.0f}x sooner); load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
