"""Receipts of a message already queued, beside first receipts: what "same message"
costs in the spool (in-process Spool.receive, fsync included, 50 KB messages).

- first:       new messages (the baseline: body written, fsync'd, linked, sidecar made)
- identical:   the same bytes again (the sidecar's I line matches: no body written)
- redelivered: the same message with other Received lines (both fingerprints computed:
               the stored file is read back)
- other:       a different message reusing the Message-ID (a variant entry is made)
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.receive import PASS, message  # noqa: E402
from routemail.spool import Spool  # noqa: E402

KINDS: dict[str, Callable[[bytes], bytes]] = {
    "identical": lambda raw: raw,
    "redelivered": lambda raw: b"Received: from mx2.example.net by inbound; now\r\n" + raw,
    "other": lambda raw: raw.replace(b"Subject: bench", b"Subject: not the same"),
}


def rate(spool: Spool, bodies: list[bytes]) -> tuple[float, float]:
    """(receipts per second, CPU milliseconds per receipt): fsync waits only in the first."""
    start, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        spool.receive(body, ["volunteers@lists.example.org"], PASS)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    return len(bodies) / elapsed, used * 1000 / len(bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=300, help="messages per round")
    parser.add_argument("--dir", type=Path, default=None, help="where to write")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"first": [], **{kind: [] for kind in KINDS}}
    cpu: dict[str, list[float]] = {"first": [], **{kind: [] for kind in KINDS}}
    ratios: dict[str, list[float]] = {kind: [] for kind in KINDS}
    tmp = Path(tempfile.mkdtemp(prefix="routemail-bench-dup-", dir=args.dir))
    try:
        for r in range(args.rounds):
            spool = Spool(tmp / str(r)).ensure()
            bodies = [message(n, f"dup-{r}") for n in range(args.messages)]
            first, cpu_first = rate(spool, bodies)
            rates["first"].append(first)
            cpu["first"].append(cpu_first)
            for kind, change in KINDS.items():
                again, cpu_again = rate(spool, [change(b) for b in bodies])
                rates[kind].append(again)
                cpu[kind].append(cpu_again)
                ratios[kind].append(again / first)
    finally:
        shutil.rmtree(tmp)
    print(
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{args.rounds} rounds of {args.messages} 50 KB messages, medians"
    )
    print(f"{'receipt':12} {'msg/s':>9} {'rate vs first':>14} {'CPU ms each':>12}")
    print(
        f"{'first':12} {statistics.median(rates['first']):9.1f} {'1.00':>14} "
        f"{statistics.median(cpu['first']):12.3f}"
    )
    for kind in KINDS:
        print(
            f"{kind:12} {statistics.median(rates[kind]):9.1f} "
            f"{statistics.median(ratios[kind]):14.2f} {statistics.median(cpu[kind]):12.3f}"
        )


if __name__ == "__main__":
    main()
