"""SMTP pacing benchmark: `rate` stays the cap for the whole run with several connections.

`routemail run` delivers a post to N members over SMTP to an aiosmtpd server on
loopback (in this process, noting when each copy was accepted), at `rate`, with
`[delivery.smtp] connections = 1` (the baseline, one copy at a time) and with 4
and 8 connections. The achieved rate is taken from the first to the last copy
accepted; it should be within 5% of `rate` in every case: more connections
must not mean more than `rate`.

    .venv/bin/python bench/smtp_pacing.py [--members 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller

from routemail.spool import Spool

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
POST = (
    b"From: Ann <ann@example.com>\r\nTo: everyone@lists.example.org\r\nSubject: Pace\r\n"
    b"Message-ID: <pace-%d@example.com>\r\n\r\n" + b"Please read this, all of you.\r\n" * 100
)


class Stamping:
    """Notes the time each copy is accepted, and the connections it came on."""

    def __init__(self) -> None:
        self.accepted_at: list[float] = []
        self.peers: set[Any] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted_at.append(time.monotonic())
        self.peers.add(session.peer)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deliver(members: int, rate: int, connections: int, n: int) -> tuple[float, int]:
    """(copies a second, connections used) for one run."""
    sink = Stamping()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            listed = ", ".join(f'"m{i:05d}@example.com"' for i in range(members))
            config = Path(tmp) / "lists.toml"
            config.write_text(
                '[site]\ndomain = "lists.example.org"\nadmin = "admin@example.org"\n'
                '[receiver]\non_receipt = "none"\n'
                f'[delivery]\ntransport = "smtp"\nrate = {rate}\n'
                f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
                f"connections = {connections}\n"
                f'[lists.everyone]\nposters = "anyone"\nmembers = [{listed}]\n'
            )
            data = Path(tmp) / "data"
            data.mkdir()
            spool = Spool(data / "maillist").ensure()
            spool.receive(POST % n, ["everyone@lists.example.org"], PASSING)
            env = dict(os.environ, ROUTEMAIL_CONFIG=str(config), ROUTEMAIL_DATA=str(data))
            subprocess.run([sys.executable, "-m", "routemail", "run", "--quiet"], env=env)
    finally:
        controller.stop()
    times = sink.accepted_at
    assert len(times) == members, f"{len(times)} of {members} copies accepted"
    return (len(times) - 1) / (times[-1] - times[0]), len(sink.peers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()}")
    print(f"{args.members} copies at rate = {args.rate}\n")
    print(f"{'connections':>11} {'copies/s':>9} {'of rate':>8} {'used':>5}")
    for n, connections in enumerate((1, 4, 8)):
        achieved, used = deliver(args.members, args.rate, connections, n)
        print(f"{connections:11d} {achieved:9.1f} {achieved / args.rate:8.1%} {used:5d}")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
