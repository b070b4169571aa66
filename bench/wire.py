"""Wire-form benchmark: what the SMTP transport's line-break normalisation costs per copy.

Prints, in one run, microseconds per copy for the ~50 KB post of bench/fanout.py with LF
and with CRLF line breaks: making the copy alone (the baseline), the copy plus the
normalisation the SMTP transport did before (one regular expression over every copy,
which left bare CRs alone), and the copy plus wire_form() (bare CR and LF to CRLF, NUL
dropped; a few byte counts when the copy is already clean). Medians over rounds.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout import IDENTITY, message

from routemail.copy import CopyMaker
from routemail.transports.wire import CRLF, wire_form

OLD = re.compile(rb"\r?\n")  # the SMTP transport's normalisation before wire_form


def per_copy(make: Callable[[str], bytes], copies: int, rounds: int) -> float:
    """Median over rounds of microseconds per copy."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(copies):
            make(f"member{i}@example.net")
        times.append((time.perf_counter() - start) / copies * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    lf = message(20_000)
    for label, raw in (("LF", lf), ("CRLF", lf.replace(b"\n", CRLF))):
        maker = CopyMaker(raw, IDENTITY)
        size = len(maker.copy_for("member@example.net"))
        base = per_copy(maker.copy_for, args.copies, args.rounds)
        copy_for = maker.copy_for
        old = per_copy(lambda r: OLD.sub(CRLF, copy_for(r)), args.copies, args.rounds)  # noqa: B023
        new = per_copy(lambda r: wire_form(copy_for(r)), args.copies, args.rounds)  # noqa: B023
        print(
            f"{label:>4} copy of {size / 1000:.0f} KB: copy alone {base:.1f} us;"
            f" + old regex {old:.1f} us (+{old - base:.1f});"
            f" + wire_form {new:.1f} us (+{new - base:.1f});"
            f" added cost new/old {(new - base) / (old - base):.2f}"
        )


if __name__ == "__main__":
    main()
