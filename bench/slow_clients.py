"""Legitimate posts beside slow clients: gunicorn alone, then behind deploy/nginx.conf.

Starts the receiver as deployed (deploy/gunicorn.conf.py: 2 workers of 4
threads), opens --slow connections that send their request heads a byte
every 2 s, then sends --posts signed posts at once, each allowed --timeout
seconds, first straight to gunicorn, then through nginx in front of the same
gunicorn. Prints how many were answered and the median time to the answer.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailrecv.local import ReceiverNotUp, free_port, start  # noqa: E402
from mailxfer.post import post_message, receipt_of  # noqa: E402
from tests.nginx import NGINX, SlowClient, running_nginx  # noqa: E402

SECRET = b"bench-secret"
PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
CONFIG = '[site]\ndomain = "lists.example.org"\nadmin = "admin@example.org"\n'
CONFIG += '\n[receiver]\non_receipt = "none"\n'


def message(n: int, tag: str) -> bytes:
    return (
        f"From: ann@example.com\r\nTo: volunteers@lists.example.org\r\nSubject: bench {n}\r\n"
        f"Message-ID: <slow-{tag}-{n}@example.com>\r\n\r\nHello.\r\n"
    ).encode()


def trial(url: str, port: int, args: argparse.Namespace, tag: str) -> tuple[int, float]:
    """Posts answered with a receipt, and the median seconds to an answer (or the timeout)."""
    slow = [SlowClient(port, body=False) for _ in range(args.slow)]
    for client in slow:
        client.start()
    while any(client.sent < 2 for client in slow):
        time.sleep(0.1)

    def one(n: int) -> tuple[bool, float]:
        began = time.monotonic()
        try:
            result = post_message(
                url,
                SECRET,
                io.BytesIO(message(n, tag)),
                ["volunteers@lists.example.org"],
                PASS,
                timeout=args.timeout,
            )
            receipt_of(result)
            return True, time.monotonic() - began
        except (OSError, ValueError):
            return False, time.monotonic() - began

    try:
        with ThreadPoolExecutor(args.posts) as pool:
            outcomes = list(pool.map(one, range(args.posts)))
    finally:
        for client in slow:
            client.done.set()
    return sum(ok for ok, _ in outcomes), statistics.median(t for _, t in outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slow", type=int, default=8, help="slow connections (default 8)")
    parser.add_argument("--posts", type=int, default=10, help="legitimate posts (default 10)")
    parser.add_argument("--timeout", type=float, default=10, help="seconds a post may take")
    args = parser.parse_args()
    if NGINX is None:
        raise SystemExit("bench: nginx is not installed (make system-deps)")
    root = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    (root / "lists.toml").write_text(CONFIG)
    env = dict(os.environ)
    env.update(
        ROUTEMAIL_CONFIG=str(root / "lists.toml"),
        ROUTEMAIL_DATA=str(root / "data"),
        MAILRECV_SECRET=SECRET.decode(),
    )
    try:
        receiver = start(env)
    except ReceiverNotUp as exc:
        raise SystemExit(f"bench: {exc}") from None
    try:
        direct = trial(receiver.url + "/mailrecv", receiver.port, args, "direct")
        port = free_port()
        with running_nginx(root / "nginx", port, receiver.port) as base:
            proxied = trial(base + "/mailrecv", port, args, "nginx")
    finally:
        receiver.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"gunicorn as deployed; {args.slow} clients sending a header byte every 2 s; "
        f"{args.posts} posts at once, {args.timeout:g} s each"
    )
    print("| path | answered | median seconds to answer |")
    print("|---|---:|---:|")
    for name, (answered, median) in (("gunicorn alone", direct), ("nginx in front", proxied)):
        print(f"| {name} | {answered} of {args.posts} | {median:.3f} |")


if __name__ == "__main__":
    main()
