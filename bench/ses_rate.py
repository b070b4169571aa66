"""SES rate benchmark: copies per second through an endpoint 50 ms away, one call at a
time against several in flight.

moto server (its own process) stands for SES, behind a front (another process,
tests/ses_front.py) that adds 50 ms to every request. `routemail run` delivers a
post to N members with `rate = 100`, once with `[delivery.ses] concurrency = 1`
(one call at a time, as before) and once with the default `"auto"`. The rate is
measured at the front, between the first and the last copy moto accepted; the
front also reports the most calls it had in flight and any throttled. For the
machine's own ceiling, 16 threads of plain boto3 send_email calls, unpaced.

    .venv/bin/python bench/ses_rate.py [--members 1000] [--rate 100] [--delay 0.05] [--busy 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

from routemail.spool import Spool
from tests.ses_front import DOMAIN, prepare_moto, running_front

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
POST = (
    b"From: Ann <ann@example.com>\r\nTo: everyone@lists.example.org\r\nSubject: Rate\r\n"
    b"Message-ID: <rate-%d@example.com>\r\n\r\n" + b"Please read this, all of you.\r\n" * 100
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    code = "import sys; from moto.server import main; main(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(url + "/moto-api/data.json", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    raise SystemExit("moto server did not start")


def reset_moto(url: str) -> None:
    request = urllib.request.Request(url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    prepare_moto(url)


def serve_front(conn: Connection, moto_url: str, delay: float) -> None:
    """In a child process: a front until asked for its figures."""
    with running_front(moto_url, delay=delay) as front:
        conn.send(front.url)
        conn.recv()
        conn.send(
            {
                "accepted_at": sorted(front.accepted_at),
                "copies": sum(front.accepted.values()),
                "duplicates": sum(n - 1 for n in front.accepted.values()),
                "most_in_flight": front.most_in_flight,
                "throttled": front.throttled,
            }
        )


class FrontProcess:
    def __init__(self, moto_url: str, delay: float) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.Process(target=serve_front, args=(child, moto_url, delay))
        self.proc.start()
        self.url = str(self.conn.recv())

    def figures(self) -> dict[str, Any]:
        self.conn.send("figures")
        figures: dict[str, Any] = self.conn.recv()
        self.proc.join()
        return figures


def achieved(figures: dict[str, Any]) -> float:
    times = figures["accepted_at"]
    return (len(times) - 1) / (times[-1] - times[0])


def routemail_run(moto_url: str, args: argparse.Namespace, concurrency: str) -> dict[str, Any]:
    reset_moto(moto_url)
    front = FrontProcess(moto_url, args.delay)
    with tempfile.TemporaryDirectory() as tmp:
        members = ", ".join(f'"m{n:05d}@example.com"' for n in range(args.members))
        config = Path(tmp) / "lists.toml"
        config.write_text(
            f'[site]\ndomain = "{DOMAIN}"\nadmin = "admin@example.org"\n'
            '[receiver]\non_receipt = "none"\n'
            f'[delivery]\ntransport = "ses"\nrate = {args.rate}\n'
            f'[delivery.ses]\nendpoint_url = "{front.url}"\nconcurrency = {concurrency}\n'
            f'[lists.everyone]\nposters = "anyone"\nmembers = [{members}]\n'
        )
        data = Path(tmp) / "data"
        data.mkdir()
        spool = Spool(data / "maillist").ensure()
        spool.receive(POST % args.members, ["everyone@lists.example.org"], PASSING)
        env = dict(os.environ, **AWS, ROUTEMAIL_CONFIG=str(config), ROUTEMAIL_DATA=str(data))
        done = subprocess.run(
            [sys.executable, "-m", "routemail", "run", "--quiet"], env=env, check=False
        )
    figures = front.figures()
    figures["exit"] = done.returncode
    return figures


def plain_boto3(moto_url: str, args: argparse.Namespace, threads: int = 16) -> dict[str, Any]:
    """The machine's ceiling: unpaced send_email calls from threads, through the front."""
    reset_moto(moto_url)
    front = FrontProcess(moto_url, args.delay)
    per_thread = args.members // threads

    def sender(n: int) -> None:
        client: Any = boto3.session.Session().client(
            "sesv2", endpoint_url=front.url, region_name="us-east-1"
        )
        for i in range(per_thread):
            client.send_email(
                FromEmailAddress=f"everyone-bounces@{DOMAIN}",
                Destination={"ToAddresses": [f"t{n}-{i}@example.com"]},
                Content={"Raw": {"Data": POST % i}},
            )

    workers = [threading.Thread(target=sender, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return front.figures()


def spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="processes spinning on the CPU during every row, as a loaded machine has",
    )
    args = parser.parse_args()
    os.environ.update(AWS)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()}")
    print(f"{args.members} copies, rate = {args.rate}, {args.delay * 1000:.0f} ms per request\n")
    moto, url = start_moto()
    busy = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for process in busy:
        process.start()
    if busy:
        print(f"{len(busy)} processes spinning on the CPU throughout\n")
    try:
        rows = [
            ("routemail, concurrency = 1", routemail_run(url, args, "1")),
            ('routemail, concurrency = "auto"', routemail_run(url, args, '"auto"')),
            ("16 threads of plain boto3, unpaced", plain_boto3(url, args)),
        ]
    finally:
        for process in busy:
            process.terminate()
        moto.terminate()
        moto.wait()
    print(f"{'':36} {'copies/s':>9} {'of rate':>8} {'in flight':>9} {'throttled':>9} dups")
    for name, f in rows:
        rate = achieved(f)
        print(
            f"{name:36} {rate:9.1f} {rate / args.rate:8.1%} {f['most_in_flight']:9d}"
            f" {f['throttled']:9d} {f['duplicates']:4d}"
        )
    print(f"\nload average at end: {os.getloadavg()}")
    print(json.dumps({name: achieved(f) for name, f in rows}))


if __name__ == "__main__":
    main()
