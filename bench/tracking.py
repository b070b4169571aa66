"""Delivery tracking on a big list: the cost of one SES report and of per-recipient webhooks.

1. Recording one report (tracking.record) on the sidecar of a post sent to N
   members, beside the baseline of reading and parsing that whole sidecar
   (Spool.history, what a check of the S line would cost done plainly), and
   beside building the message's timeline (GET /api/v1/messages/{id}).
2. N per-recipient `sent` webhook events written as delivery writes them
   (Outbox.copy, then one flush), beside the baseline of N events each
   fsync'd on its own (Outbox.emit).

    python bench/tracking.py [--members 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routemail import sidecar, timeline, tracking  # noqa: E402
from routemail.config import Webhooks  # noqa: E402
from routemail.spool import Spool  # noqa: E402
from routemail.webhooks import Outbox  # noqa: E402

PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


def ses_id(n: int) -> str:
    return f"0100018c2a7f{n:04x}-5b0e6c4a-1f2d-4e3b-9a8c-{n:012x}-000000"


def big_entry(spool: Spool, members: int) -> str:
    raw = b"From: ann@example.com\nSubject: big\nMessage-ID: <big@example.com>\n\nhi\n"
    msg_id = spool.receive(raw, ["volunteers@lists.example.org"], PASS).id
    lines = [
        sidecar.event(sidecar.SENT, f"member{n}@example.com", ses_id(n)) for n in range(members)
    ]
    spool.append(msg_id, [*lines, sidecar.event(sidecar.LIST_SENT, "volunteers")])
    return msg_id


def median_ms(fn: Callable[[int], object], rounds: int) -> float:
    times = []
    for r in range(rounds):
        start = time.perf_counter()
        fn(r)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.members, args.rounds
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.2f}; {n} members, median of {rounds} rounds"
    )
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "maillist").ensure()
        msg_id = big_entry(spool, n)
        size = spool.sidecar_path(msg_id).stat().st_size
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)

        def report(r: int) -> None:
            who = (r * 7919) % n
            got = tracking.record(
                spool,
                msg_id,
                [
                    tracking.Report(
                        sidecar.DELIVERED,
                        f"member{who}@example.com",
                        f"ses:{ses_id(who)}:{r}",
                        "250 ok",
                        now,
                        ses_id(who),
                    )
                ],
            )
            assert got == [tracking.RECORDED], got

        parse = median_ms(lambda r: spool.history(msg_id), rounds)
        record = median_ms(report, rounds)
        view = median_ms(lambda r: timeline.of(spool, msg_id), rounds)
        print(f"\nsidecar of {size / 1e6:.2f} MB ({n} S lines)")
        print(f"  {'':46} {'ms':>8} {'vs parse':>9}")
        print(f"  {'baseline: Spool.history (read + parse all)':46} {parse:8.2f} {1:9.2f}")
        one = "tracking.record of one report (under lock)"
        print(f"  {one:46} {record:8.2f} {record / parse:9.2f}")
        print(f"  {'timeline.of (the status API)':46} {view:8.2f} {view / parse:9.2f}")

        events = min(n, 2000)
        hooks = Outbox(Path(tmp), Webhooks(urls=("http://127.0.0.1:9/hook",)))

        def synced(r: int) -> None:
            for i in range(events):
                hooks.emit("sent", message=msg_id, address=f"m{i}@example.com", detail="x")

        def batched(r: int) -> None:
            for i in range(events):
                hooks.copy("sent", msg_id, f"m{i}@example.com", "volunteers", "x")
            hooks.flush()

        each = median_ms(synced, max(1, rounds // 2))
        flushed = median_ms(batched, max(1, rounds // 2))
        print(f"\n{events} per-recipient webhook events")
        print(f"  {'':46} {'ms':>8} {'per event':>9} {'vs each':>8}")
        print(
            f"  {'baseline: each fsync-ed (Outbox.emit)':46} {each:8.1f} "
            f"{each / events * 1000:7.0f}us {1:8.2f}"
        )
        print(
            f"  {'Outbox.copy, one flush (as delivery does)':46} {flushed:8.1f} "
            f"{flushed / events * 1000:7.0f}us {flushed / each:8.2f}"
        )


if __name__ == "__main__":
    main()
