"""What counting a run's outcomes costs the fan-out: routemail.route.Router sending one
message to a large list, with the run's Tally against one whose methods do nothing.

Both sides do the same work otherwise: the copy for each member, the S line appended
to the sidecar (as every run does), a transport that accepts at once (no network, so
the router's own cost is what shows). Rounds alternate between the two so a busy
machine slows both alike; medians are printed with their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routemail import config as configmod
from routemail.actionlog import ActionLog
from routemail.route import Router
from routemail.spool import Spool
from routemail.tally import Tally
from routemail.transports import SENT, Result

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


class Accepting:
    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        return Result(SENT, "250 OK")

    def close(self) -> None:
        pass


class NotCounting(Tally):
    """The baseline: a Tally that counts nothing."""

    def expect(self, copies: int) -> None:
        pass

    def copy(self, msg_id: str, listname: str, outcome: str, detail: str = "") -> None:
        pass

    def message(self, msg_id: str, outcome: str, listname: str = "") -> None:
        pass


def site(root: Path, members: int) -> configmod.Config:
    addresses = ", ".join(f'"m{n:05d}@example.com"' for n in range(members))
    path = root / "lists.toml"
    path.write_text(
        '[site]\ndomain = "lists.example.org"\nadmin = "admin@example.org"\n'
        'base_url = "https://lists.example.org"\n\n'
        f'[lists.everyone]\nposters = "anyone"\nmembers = [{addresses}]\n'
    )
    return configmod.load(path)


def one_round(tally: Tally, members: int) -> float:
    """Seconds to route one message to every member."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        config = site(root, members)
        spool = Spool(root / "data" / "maillist").ensure()
        raw = (
            b"From: Ann <ann@example.com>\nTo: everyone@lists.example.org\nSubject: Hello\n"
            b"Message-ID: <bench-counting@example.com>\n\n" + b"Text of the message.\n" * 200
        )
        msg_id = spool.receive(raw, ["everyone@lists.example.org"], PASSING).id
        log = ActionLog(spool.root / "log")
        router = Router(config, spool, log, transport=Accepting(), counts=tally)
        try:
            started = time.perf_counter()
            error = router.process(msg_id)
            elapsed = time.perf_counter() - started
        finally:
            router.close()
            log.close()
        assert error is None, error
        assert not spool.is_pending(msg_id)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.members} members, {args.rounds} rounds"
    )
    counting: list[float] = []
    baseline: list[float] = []
    for n in range(args.rounds):
        counted = Tally()
        # Alternate which goes first, so neither always meets a warmer cache.
        for tally in (NotCounting(), counted) if n % 2 == 0 else (counted, NotCounting()):
            elapsed = one_round(tally, args.members)
            (counting if tally is counted else baseline).append(elapsed)
        assert counted.total.sent == args.members
    print("rounds without:", " ".join(f"{t:.3f}" for t in baseline))
    print("rounds with:   ", " ".join(f"{t:.3f}" for t in counting))
    base, with_tally = statistics.median(baseline), statistics.median(counting)
    print(
        f"without counting: {args.members / base:,.0f} copies/s "
        f"(median {base * 1e6 / args.members:.1f} us a copy)"
    )
    print(
        f"with counting:    {args.members / with_tally:,.0f} copies/s "
        f"(median {with_tally * 1e6 / args.members:.1f} us a copy)"
    )
    print(f"ratio with/without: {with_tally / base:.3f}")
    alone = counting_alone()
    print(
        f"counting alone: {alone * 1e6:.2f} us a copy "
        f"({alone / base * args.members * 100:.2f}% of a copy's routing without it)"
    )


def counting_alone(calls: int = 200_000) -> float:
    """Seconds per Tally.copy() call (median of 5), the whole of what counting adds."""
    times = []
    for _ in range(5):
        t = Tally()
        started = time.perf_counter()
        for _ in range(calls):
            t.copy("abc", "everyone", "sent")
        times.append((time.perf_counter() - started) / calls)
    return statistics.median(times)


if __name__ == "__main__":
    main()
