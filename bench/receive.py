"""Receiver throughput: signed 50 KB posts to gunicorn against a bare write+fsync loop."""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailrecv.local import LocalReceiver, ReceiverNotUp, start  # noqa: E402
from mailxfer.signing import signed_headers  # noqa: E402

SIZE = 50 * 1024
SLOW_CREATE_SECONDS = 50e-6  # an uncontended file creation takes 5-30 µs
PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
CONFIG = """\
[site]
domain = "lists.example.org"
admin = "admin@example.org"
base_url = "https://lists.example.org"

[receiver]
on_receipt = "none"
"""


def message(n: int, tag: str) -> bytes:
    """A 50 KB message with its own Message-ID."""
    head = (
        f"From: ann@example.com\r\nTo: volunteers@lists.example.org\r\n"
        f"Subject: bench {n}\r\nMessage-ID: <bench-{tag}-{n}@example.com>\r\n\r\n"
    ).encode()
    line = base64.b64encode(hashlib.sha256(head).digest() * 2)[:76] + b"\r\n"
    body = line * ((SIZE - len(head)) // len(line))
    return head + body + b"x" * (SIZE - len(head) - len(body))


def start_gunicorn(root: Path, secret: str, workers: int, threads: int) -> LocalReceiver:
    """The deployed receiver with these workers and threads (1 thread: the sync worker)."""
    env = dict(os.environ)
    env.update(
        ROUTEMAIL_CONFIG=str(root / "lists.toml"),
        ROUTEMAIL_DATA=str(root / "data"),
        MAILRECV_SECRET=secret,
    )
    threading_options = ["--threads", str(threads)] if threads > 1 else ["--worker-class", "sync"]
    try:
        return start(env, workers=workers, options=threading_options)
    except ReceiverNotUp as exc:
        raise SystemExit(f"bench: {exc}") from None


def signed_request(secret: bytes, body: bytes) -> bytes:
    """One complete HTTP/1.1 POST of body to /mailrecv, signed as mailxfer signs it."""
    headers = signed_headers(
        secret,
        int(time.time()),
        ["volunteers@lists.example.org"],
        PASS,
        hashlib.sha256(body).hexdigest(),
    )
    head = [
        "POST /mailrecv HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: message/rfc822",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def exchange(port: int, request: bytes) -> int:
    """Send a prebuilt request on a new connection; the response's status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


def post_all(
    port: int, secret: bytes, bodies: list[bytes], threads: int, expect: int = 200
) -> float:
    """Post every body from `threads` client threads; messages per second.

    The requests are signed and serialized before the clock starts, and sent
    over plain sockets, so the load generator takes as little as it can of
    the cores it shares with the receiver.
    """
    requests = [signed_request(secret, body) for body in bodies]
    failures: list[int] = []

    def worker(share: list[bytes]) -> None:
        for request in share:
            status = exchange(port, request)
            if status != expect:
                failures.append(status)

    pool = [threading.Thread(target=worker, args=(requests[i::threads],)) for i in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"bench: {len(failures)} posts failed: {sorted(set(failures))}")
    return len(bodies) / elapsed


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bare_loop(directory: Path, bodies: list[bytes]) -> float:
    """Temp file, write, fsync, rename, directory fsync per body; messages per second."""
    tmp = directory / "tmp"
    final = directory / "final"
    tmp.mkdir(parents=True, exist_ok=True)
    final.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for n, body in enumerate(bodies):
        path = tmp / str(n)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path, final / str(n))
        fsync_dir(final)
    return len(bodies) / (time.perf_counter() - start)


def spool_only(directory: Path, bodies: list[bytes]) -> float:
    """Spool.receive in this process, no HTTP; messages per second."""
    from routemail.spool import Spool

    spool = Spool(directory).ensure()
    start = time.perf_counter()
    for body in bodies:
        spool.receive(body, ["volunteers@lists.example.org"], PASS)
    return len(bodies) / (time.perf_counter() - start)


def file_creation_cost(directory: Path, files: int = 100) -> float:
    """Median CPU seconds to create an empty file in directory (kept, not deleted)."""
    directory.mkdir(parents=True)
    costs = []
    for n in range(files):
        start = time.thread_time()
        os.close(os.open(directory / str(n), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        costs.append(time.thread_time() - start)
    return statistics.median(costs)


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--messages", type=int, default=400, help="messages per round")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=4,
        help="threads per gunicorn worker, as deploy/gunicorn.conf.py (1: the sync worker)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="client threads (default: one per server thread)"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the files written in place (removing them slows the next run; see RESULTS.md)",
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="also time the HTTP path alone (401s) and the spool alone (no HTTP)",
    )
    args = parser.parse_args()
    args.threads = args.threads or args.workers * args.worker_threads

    tmp = tempfile.mkdtemp(prefix="routemail-bench-", dir=args.dir)
    try:
        rates, create_cost, queued = measure(Path(tmp), args)
    finally:
        if args.keep:
            print(f"files kept in {tmp}")
        else:
            shutil.rmtree(tmp)
    report(args, rates, create_cost, queued)


def measure(root: Path, args: argparse.Namespace) -> tuple[dict[str, list[float]], float, int]:
    """Rounds of receiver and bare loop (and the parts); the rates by name."""
    secret = secrets.token_hex(16)
    create_cost = file_creation_cost(root / "probe")
    (root / "lists.toml").write_text(CONFIG)
    receiver = start_gunicorn(root, secret, args.workers, args.worker_threads)
    port = receiver.port
    rates: dict[str, list[float]] = {"receiver": [], "bare": [], "http": [], "spool": []}
    try:
        for r in range(args.rounds):
            bodies = [message(n, f"{r}-{secrets.token_hex(4)}") for n in range(args.messages)]
            rates["receiver"].append(post_all(port, secret.encode(), bodies, args.threads))
            rates["bare"].append(bare_loop(root / "bare" / str(r), bodies))
            if args.parts:
                rates["http"].append(post_all(port, b"wrong", bodies, args.threads, 401))
                rates["spool"].append(spool_only(root / "spool-only" / str(r), bodies))
            print(
                f"round {r + 1}: receiver {rates['receiver'][-1]:7.1f} msg/s, "
                f"bare write+fsync {rates['bare'][-1]:7.1f} msg/s",
                flush=True,
            )
    finally:
        receiver.stop()
    queued = len(list((root / "data" / "maillist" / "QUEUE").glob("*.data")))
    return rates, create_cost, queued


def report(
    args: argparse.Namespace, rates: dict[str, list[float]], create_cost: float, queued: int
) -> None:
    receiver = statistics.median(rates["receiver"])
    bare = statistics.median(rates["bare"])
    worker = f"{args.worker_threads} threads each" if args.worker_threads > 1 else "sync"
    print(f"\nmachine: {machine()}")
    print(
        f"{args.messages} x 50 KB per round, {args.rounds} rounds, {args.threads} client threads, "
        f"gunicorn {args.workers} workers ({worker}), on_receipt = none; {queued} entries queued"
    )
    print(f"creating a file here: {create_cost * 1e6:.0f} µs of CPU (median of 100)")
    if create_cost > SLOW_CREATE_SECONDS:
        print(
            "  slow: on an ext4 without a journal, files deleted in the last minutes make "
            "every new file scan past them; the receiver creates two files per message, "
            "the bare loop one (see bench/RESULTS.md)"
        )
    print(f"receiver (median):           {receiver:7.1f} messages/s")
    print(f"bare write+fsync (median):   {bare:7.1f} messages/s")
    paired = statistics.median(r / b for r, b in zip(rates["receiver"], rates["bare"], strict=True))
    print(f"ratio of the medians:        {receiver / bare:7.2f}  (goal >= 0.50)")
    print(f"median of per-round ratios:  {paired:7.2f}  (each round's pair saw the same machine)")
    if args.parts:
        http, spool = statistics.median(rates["http"]), statistics.median(rates["spool"])
        print(f"HTTP path alone, 401s (median): {http:7.1f} requests/s")
        print(
            f"spool alone, no HTTP (median):  {spool:7.1f} messages/s  ({spool / bare:.2f} of bare)"
        )


if __name__ == "__main__":
    main()
