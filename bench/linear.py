"""Linear-time benchmark: seconds per MB of routing work for hostile message shapes.

For each shape of tests/hostile.py, built at 10 KB and at 1 MB, prints the time per MB
of what `routemail run` does with a list post (read the routing headers, build the copy
for the list, make one recipient's copy), beside two baselines measured in the same run:
a benign text message of the same size, and a plain copy of the same number of bytes.
The ratio of the 1 MB figure to the 10 KB one shows linearity: about 1 (or below, as
fixed costs spread) when linear, about 100 when quadratic (10 with --large 100000).
Then copies a 40 MB message of each body shape. Medians over rounds; each round repeats
a small message until it has run for a while, so the clock's resolution does not count.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routemail.copy import CopyError, CopyMaker
from routemail.message import Headers
from tests.copy_support import RECIPIENT, identity
from tests.hostile import SHAPES, Shape

SMALL, LARGE = 10_000, 1_000_000  # --large changes LARGE (for the quadratic code: 100 KB)
MIN_ROUND_SECONDS = 0.2
IDENTITY = identity(header="Hi {recipient}")


def route_work(raw: bytes) -> str:
    """What a run does with a list post before sending: the outcome, for the table."""
    Headers.of(raw)
    try:
        CopyMaker(raw, IDENTITY).copy_for(RECIPIENT)
    except CopyError:
        return "held"
    return "copied"


def plain_copy(raw: bytes) -> str:
    bytearray(raw)
    return "-"


def seconds_per_mb(work: Callable[[bytes], str], raw: bytes, rounds: int) -> tuple[float, str]:
    """Median over rounds of the seconds per MB of work(raw), and work's outcome."""
    times = []
    outcome = ""
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while True:
            outcome = work(raw)
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= MIN_ROUND_SECONDS:
                break
        times.append(elapsed / n / (len(raw) / 1e6))
    return statistics.median(times), outcome


def table(shapes: list[Shape], rounds: int, large: int) -> None:
    size = f"{large / 1e6:g} MB"
    benign = next(s for s in SHAPES if s.name == "benign_text")
    base = {n: seconds_per_mb(route_work, benign.build(n), rounds)[0] for n in (SMALL, large)}
    raw_copy = seconds_per_mb(plain_copy, benign.build(large), rounds)[0]
    print(f"baseline: benign text {base[SMALL]:.4f} s/MB at 10 KB, {base[large]:.4f} at {size};")
    print(f"          plain copy of the bytes {raw_copy:.5f} s/MB")
    print()
    columns = ("s/MB 10 KB", f"s/MB {size}", "ratio", "x benign")
    print(f"{'shape':22} {columns[0]:>11} {columns[1]:>10} {columns[2]:>7} {columns[3]:>9}  {size}")
    for shape in shapes:
        small, _ = seconds_per_mb(route_work, shape.build(SMALL), rounds)
        big_, outcome = seconds_per_mb(route_work, shape.build(large), rounds)
        print(
            f"{shape.name:22} {small:11.4f} {big_:10.4f} {big_ / small:7.2f} "
            f"{big_ / base[large]:9.1f}  {outcome}",
            flush=True,
        )


def big(shapes: list[Shape], megabytes: int) -> None:
    size = megabytes * 1_000_000
    print()
    print(f"{megabytes} MB messages, one run each (header shapes are held: block over the limit)")
    for shape in shapes:
        if shape.in_header:
            continue
        raw = shape.build(size)
        start = time.perf_counter()
        outcome = route_work(raw)
        elapsed = time.perf_counter() - start
        print(f"{shape.name:22} {elapsed:7.2f} s  {elapsed / megabytes:.4f} s/MB  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big", type=int, default=40, metavar="MB", help="0 to skip")
    parser.add_argument("--shape", action="append", help="only these shapes (repeatable)")
    parser.add_argument("--large", type=int, default=LARGE, metavar="BYTES")
    args = parser.parse_args()
    shapes = [s for s in SHAPES if not args.shape or s.name in args.shape]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"work per message: Headers.of + CopyMaker + copy_for; median of {args.rounds} rounds")
    table(shapes, args.rounds, args.large)
    if args.big:
        big(shapes, args.big)


if __name__ == "__main__":
    main()
