"""What ignoring the case of addresses costs a suppression check: Suppression.reason
(called once per recipient of every copy) over a table of many suppressed addresses,
with the NOCASE index of migration 4 and without it (dropped in a copy of the same
database), beside the exact-match lookup the primary key served before (#12).

Rounds alternate between the three so a busy machine slows them alike; medians per
lookup are printed with their ratios to the exact-match baseline.
"""

from __future__ import annotations

import argparse
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routemail.config import Bounces
from routemail.state import State
from routemail.suppression import Suppression

EXACT = (
    "SELECT reason, list FROM suppressions WHERE address = ? AND list IN ('', ?) "
    "ORDER BY list LIMIT 1"
)


def suppressed_site(root: Path, rows: int) -> Path:
    state = State.open(root)
    with state.transaction() as db:
        db.executemany(
            "INSERT INTO suppressions (address, list, reason, detail, created) "
            "VALUES (?, '', 'bounce', '', 0)",
            [(f"Member{i}@example.com",) for i in range(rows)],
        )
    state.close()
    return root


def timed(lookup: Callable[[str], object], addresses: list[str]) -> float:
    start = time.perf_counter()
    for address in addresses:
        lookup(address)
    return (time.perf_counter() - start) / len(addresses) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(12)
    addresses = [f"member{rng.randrange(2 * args.rows)}@example.com" for _ in range(args.lookups)]
    with tempfile.TemporaryDirectory() as tmp:
        indexed = suppressed_site(Path(tmp) / "indexed", args.rows)
        bare = Path(tmp) / "bare"
        shutil.copytree(indexed, bare)
        with_index = State.open(indexed)
        without = State.open(bare)
        without.db.execute("DROP INDEX suppressions_address_nocase")
        policy = Bounces()
        sides: dict[str, Callable[[str], object]] = {
            "exact match (before #12)": lambda a: with_index.db.execute(
                EXACT, (a, "band")
            ).fetchone(),
            "NOCASE with index": lambda a: Suppression(with_index, policy).reason(a, "band"),
            "NOCASE without index": lambda a: Suppression(without, policy).reason(a, "band"),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, lookup in sides.items():
                times[name].append(timed(lookup, addresses))
        with_index.close()
        without.close()
    print(
        f"{platform.node()} {platform.machine()}, {args.rows:,} suppressed, median of "
        f"{args.rounds} rounds of {args.lookups} lookups"
    )
    base = statistics.median(times["exact match (before #12)"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:26} {median:9.1f} us a lookup  x{median / base:.2f}")


if __name__ == "__main__":
    main()
