"""Delivery benchmark: personalised copies of a 50 KB multipart post over SMTP.

Prints, in one run, recipients accepted per second by a fast SMTP sink on loopback
(tests/smtp_sink.py, in a process of its own) for:

- `routemail run` with its default settings (transport smtp to the sink, no TLS on
  loopback, and `rate` lifted so that the sender, not the cap, is measured), one
  personal copy per member (footer and one-click link);
- the baseline measured in the same sitting: one smtplib session in this process
  sending byte-spliced personal copies (the footer spliced into the message bytes);
- with --peers, mlmmj (Debian package) bulk and personal, and GNU Mailman 3 (in a
  virtualenv of its own, bench/mailman_peer.py) bulk and personalize=full, when
  installed.

A rate is the recipients the sink accepted divided by the time from the first MAIL
to the last accepted message; "wall" adds start-up. Every copy is checked at the
sink to name its own recipient. Peak RSS of `routemail run` comes from wait4(); the
memory line compares a run with a 10 MB post against one with the 50 KB post.
CPU/rcpt is the sender's CPU time (user and system, start-up included) per recipient,
where it is measured (routemail, the baseline); sink/rcpt the sink's, for every
sender: on a machine of two shared cores the sink's share is not the sender's, and
both are steadier than rates when the machine is busy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import mailman_peer
from bench.fanout import message
from routemail import tokens
from routemail.config import Site
from routemail.spool import Spool

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789abcdef0123456789"
SITE = Site("lists.example.org", "admin@example.org", "https://lists.example.org", "Lists")
FOOTER = "-- \nYou are on {list} as {recipient}.\nLeave: {unsubscribe_url}"
SENDER = "volunteers-bounces@lists.example.org"
VERDICTS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
ATTACHMENT = 24_000  # bytes before base64: a post of about 50 KB
BIG_ATTACHMENT = 7_500_000  # about 10 MB
MLMMJ_DIRS = (
    *("incoming", "queue", "queue/discarded", "archive", "text", "subconf", "unsubconf"),
    *("bounce", "control", "moderation", "subscribers.d", "digesters.d", "requeue"),
    "nomailsubs.d",
)


class SinkProcess:
    """tests/smtp_sink.py run as a program: its port, and its counts on demand."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.smtp_sink"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def ask(self, what: str) -> dict[str, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        counts: dict[str, float] = json.loads(self.proc.stdout.readline())
        return counts

    def wait_for(self, recipients: int, timeout: float = 120) -> dict[str, float]:
        """The counts once `recipients` were accepted (a sender's last reply can reach
        it before the sink has counted the message)."""
        deadline = time.monotonic() + timeout
        while (counts := self.ask("stats"))["recipients"] < recipients:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return counts

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


# Runs each `routemail run` and reports its wall time and peak RSS (wait4). A child
# forked from this process would report this process's own peak as its own when that
# is higher; a small launcher's children report theirs.
LAUNCHER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    start = time.perf_counter()
    proc = subprocess.Popen(job["argv"], env=job["env"], cwd=job["cwd"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps([wall, code, usage.ru_maxrss * 1024, cpu]), flush=True)
"""


class Launcher:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, int, float]:
        """argv run in cwd to its end: wall seconds, exit code, peak RSS in bytes, and
        CPU seconds (user and system, start-up included)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        job = {"argv": argv, "env": env, "cwd": str(cwd)}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        wall, code, rss, cpu = json.loads(self.proc.stdout.readline())
        return wall, code, rss, cpu

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


LAUNCH: Launcher | None = None


class Measure:
    """One sender's figures; cpu, the sender's CPU seconds where measured."""

    def __init__(
        self,
        label: str,
        counts: dict[str, float],
        expected: int,
        wall: float,
        cpu: float | None = None,
    ) -> None:
        self.label = label
        self.accepted = int(counts["recipients"])
        per_rcpt = 1e6 / self.accepted if self.accepted else 0.0
        self.cpu_us = cpu * per_rcpt if cpu is not None else None
        self.sink_us = counts.get("cpu", 0.0) * per_rcpt
        self.personalised = int(counts["personalised"])
        self.expected = expected
        span = counts["last"] - counts["first"]
        self.rate = self.accepted / span if span > 0 else 0.0
        self.wall_rate = self.accepted / wall if wall > 0 else 0.0
        self.connections = int(counts["connections"])


def crlf(raw: bytes) -> bytes:
    """The post with CRLF line breaks, as mail arrives from SES or an MTA."""
    return raw.replace(b"\n", b"\r\n")


def members(n: int) -> list[str]:
    return [f"member{i}@example.net" for i in range(n)]


# -- routemail --------------------------------------------------------------------


def project(root: Path, port: int, n: int) -> dict[str, str]:
    """A lists.toml sending to the sink, a list of n members; the environment to run in."""
    addresses = ", ".join(f'"{m}"' for m in members(n))
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "lists.toml").write_text(
        f"""\
[site]
domain = "lists.example.org"
admin = "admin@example.org"
base_url = "https://lists.example.org"

[receiver]
on_receipt = "none"

[delivery]
transport = "smtp"
rate = 1000000

[delivery.smtp]
host = "127.0.0.1"
port = {port}
tls = "none"

[lists.volunteers]
description = "All volunteers"
posters = "anyone"
subject_prefix = "[volunteers]"
footer = {json.dumps(FOOTER)}
members = [{addresses}]
"""
    )
    env = dict(os.environ)
    env.update(
        ROUTEMAIL_CONFIG=str(root / "lists.toml"),
        ROUTEMAIL_DATA=str(root / "data"),
        MAILRECV_SECRET=SECRET,
    )
    return env


def run_routemail(
    sink: SinkProcess, raw: bytes, n: int, profile: Path | None = None, tree: str | None = None
) -> tuple[Measure, int]:
    """One `routemail run` delivering raw to n members: its figures and peak RSS.
    tree: run the routemail package of that source tree instead (an earlier commit)."""
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        env = project(Path(tmp), sink.port, n)
        if tree:
            env["PYTHONPATH"] = tree
        Spool(Path(tmp) / "data" / "maillist").ensure().receive(
            raw, ["volunteers@lists.example.org"], VERDICTS
        )
        sink.ask("reset")
        command = [sys.executable, "-m", "routemail", "run"]
        if profile is not None:
            command[1:1] = ["-m", "cProfile", "-o", str(profile)]
        global LAUNCH
        LAUNCH = LAUNCH or Launcher()
        # In the project's folder: `python -m` looks in the current folder first, which
        # would take this tree's routemail over PYTHONPATH's.
        wall, code, rss, cpu = LAUNCH.run(command, env, Path(tmp))
        if code != 0:
            sys.exit(f"routemail run exited {code}")
        counts = sink.wait_for(n)
    label = f"routemail run from {Path(tree).name}" if tree else "routemail run (defaults)"
    return Measure(label, counts, n, wall, cpu), rss


# -- the baseline: one smtplib session, byte-spliced copies ----------------------


def run_baseline(sink: SinkProcess, raw: bytes, n: int) -> Measure:
    """Each member's copy is the post's bytes with the footer and one-click link
    spliced in before the closing boundary of its first text part; smtplib sends it."""
    cut = raw.index(b"\r\n--alt")
    head, tail = raw[:cut], raw[cut:]
    sink.ask("reset")
    start, cpu = time.perf_counter(), time.process_time()
    conn = smtplib.SMTP("127.0.0.1", sink.port)
    issued = int(time.time())
    for member in members(n):
        url = tokens.unsubscribe_url(SITE, SECRET.encode(), "volunteers", member, issued)
        footer = FOOTER.format(list="volunteers", recipient=member, unsubscribe_url=url)
        conn.sendmail(SENDER, [member], head + b"\r\n" + footer.encode() + tail)
    conn.quit()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Measure("one smtplib session, byte-spliced", sink.wait_for(n), n, wall, cpu)


# -- mlmmj ------------------------------------------------------------------------


def run_mlmmj(
    sink: SinkProcess, raw: bytes, n: int, personal: bool, bindir: str | None
) -> Measure | None:
    """mlmmj delivering raw to n subscribers through the sink: bulk (one identical
    copy per 100 recipients, its default) or personal (To: each member, a copy each)."""
    receive = shutil.which("mlmmj-receive", path=bindir)
    if receive is None:
        return None
    with tempfile.TemporaryDirectory(prefix="bench-mlmmj-") as tmp:
        listdir = Path(tmp) / "volunteers"
        for sub in MLMMJ_DIRS:  # what mlmmj-make-ml makes, without its questions
            (listdir / sub).mkdir(parents=True)
        (listdir / "index").touch()
        control = listdir / "control"
        (control / "listaddress").write_text("volunteers@lists.example.org\n")
        (control / "owner").write_text("admin@example.org\n")
        (control / "relayhost").write_text("127.0.0.1\n")
        (control / "smtpport").write_text(f"{sink.port}\n")
        (control / "footer").write_text("-- \nYou are on volunteers.\n")
        # verp: envelope senders left to the MTA, so up to maxverprecips (100)
        # recipients share a transaction; without it, a message per recipient.
        (control / ("addtohdr" if personal else "verp")).write_text("")
        (listdir / "subscribers.d" / "m").write_text("".join(f"{m}\n" for m in members(n)))
        sink.ask("reset")
        start = time.perf_counter()
        env = dict(os.environ, SENDER="ann@example.com")  # the envelope sender, as an MTA sets it
        subprocess.run([receive, "-F", "-L", str(listdir)], input=raw, env=env, check=True)
        counts = sink.wait_for(n, timeout=30)
        wall = time.perf_counter() - start
    label = "mlmmj, personal (To: per member)" if personal else "mlmmj, bulk (100 rcpt/txn)"
    return Measure(label, counts, n, wall)


# -- GNU Mailman 3 -----------------------------------------------------------------


def run_mailman(
    sink: SinkProcess, raw: bytes, n: int, personal: bool, venv: Path, rounds: int
) -> Measure:
    """Mailman delivering raw to n members through the sink, the median of rounds
    posts to one list: bulk (its default: one identical copy per `max_recipients`
    recipients) or personalize=full (a copy each, To: the member)."""
    runs = []
    with mailman_peer.MailmanList(venv, sink, members(n), personal) as mlist:
        for _ in range(rounds):
            counts, wall = mlist.deliver(raw)
            if personal:
                label = "Mailman 3, personalize=full"
            else:  # the recipients per transaction Mailman chose, as the sink saw them
                per = counts["recipients"] / counts["messages"] if counts["messages"] else 0
                label = f"Mailman 3, bulk ({per:.0f} rcpt/txn)"
            runs.append(Measure(label, counts, n, wall))
    return median_of(runs)


# -- one sitting ------------------------------------------------------------------


def interleaved(
    sink: SinkProcess, raw: bytes, n: int, args: argparse.Namespace
) -> tuple[list[tuple[Measure, int]], Measure]:
    """routemail, the baseline, --compare's tree and mlmmj bulk, each run once a round
    in turn, so that a busy spell of the shared machine falls on all of them alike;
    their medians (with the highest peak RSS) and the baseline's. Prints how routemail
    fared against mlmmj bulk round by round."""
    senders: dict[str, Callable[[], tuple[Measure, int]]] = {
        "routemail": lambda: run_routemail(sink, raw, n),
        "base": lambda: (run_baseline(sink, raw, n), 0),
    }
    if args.compare:
        senders["compare"] = lambda: run_routemail(sink, raw, n, tree=args.compare)
    if args.peers and shutil.which("mlmmj-receive", path=args.mlmmj):

        def mlmmj() -> tuple[Measure, int]:
            peer = run_mlmmj(sink, raw, n, False, args.mlmmj)
            assert peer is not None
            return peer, 0

        senders["mlmmj"] = mlmmj
    runs: dict[str, list[tuple[Measure, int]]] = {key: [] for key in senders}
    for _ in range(args.rounds):
        for key, run in senders.items():
            runs[key].append(run())
    if "mlmmj" in runs:
        ratios = [
            ours.rate / peer.rate
            for (ours, _), (peer, _) in zip(runs["routemail"], runs["mlmmj"], strict=True)
        ]
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"  {n:,} members, routemail / mlmmj bulk round by round: {shown};"
            f" median {sorted(ratios)[len(ratios) // 2]:.2f}"
        )
    rows = [(median_of([m for m, _ in done]), max(r for _, r in done)) for done in runs.values()]
    return rows, rows[1][0]


# -- CPU per copy -----------------------------------------------------------------


def per_copy(raw: bytes, copies: int = 2000, rounds: int = 5) -> tuple[float, float, float]:
    """Microseconds per copy (best of rounds) for the copy alone, the copy and its DATA
    form joined from prepared pieces, and the copy with what the SMTP transport did
    before: wire_form() and smtplib's dot-stuffing (a regular expression) over it."""
    from routemail.config import MailingList
    from routemail.copy import CopyMaker
    from routemail.copyheaders import ListIdentity
    from routemail.transports.wire import CRLF, smtp_data, wire_form

    mlist = MailingList(name="volunteers", subject_prefix="[volunteers]", footer=FOOTER)
    maker = CopyMaker(raw, ListIdentity(mlist, SITE, SECRET.encode()))
    people = members(copies)

    def best(work: Callable[[str], object]) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for member in people:
                work(member)
            times.append((time.perf_counter() - start) / copies * 1e6)
        return min(times)

    def before(member: str) -> bytes:
        data = smtplib._quote_periods(wire_form(maker.copy_for(member)))  # type: ignore[attr-defined]
        return (data if data.endswith(CRLF) else data + CRLF) + b".\r\n"

    return (
        best(maker.copy_for),
        best(lambda member: smtp_data(maker.copy_for(member))),
        best(before),
    )


# -- report -----------------------------------------------------------------------


def median_of(runs: list[Measure]) -> Measure:
    runs = sorted(runs, key=lambda m: m.rate)
    return runs[len(runs) // 2]


def show_profile(path: Path, limit: int = 14) -> None:
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    print(f"\nprofile of one routemail run, {total:.2f} s in all, by own time:")
    for (file, line, name), (_, calls, own, cumulative, _) in rows[:limit]:
        where = f"{Path(file).name}:{line}" if line else file
        print(
            f"  {100 * own / total:5.1f} %  {cumulative:6.2f} s cum  {calls:>8}  {name} ({where})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--peers", action="store_true", help="also mlmmj and GNU Mailman 3, when installed"
    )
    parser.add_argument(
        "--compare", help="also run routemail from this source tree (say, a worktree of main)"
    )
    parser.add_argument("--mlmmj", help="the folder holding mlmmj-receive (default: PATH)")
    parser.add_argument(
        "--mailman",
        metavar="VENV",
        help=f"a virtualenv holding GNU Mailman 3 (default: ${mailman_peer.VENV_VARIABLE})",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile one run at the largest size"
    )
    parser.add_argument("--memory", action="store_true", help="peak RSS with a 10 MB post")
    args = parser.parse_args()

    raw = crlf(message(ATTACHMENT))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, load average {load}"
    )
    print(
        f"post: {len(raw):,} bytes with CRLF line breaks, multipart (QP text + QP HTML"
        " + base64 attachment)"
    )
    print(
        f"median of {args.rounds} rounds, each running routemail, the baseline, --compare"
        " and mlmmj bulk once in turn; rate = recipients accepted / first MAIL to last 250"
    )
    mailman = mailman_peer.find(args.mailman) if args.peers else None
    if args.peers:
        have_mlmmj = shutil.which("mlmmj-receive", path=args.mlmmj)
        mlmmj = (
            "mlmmj (bulk each round, personal once)"
            if have_mlmmj
            else "mlmmj: not installed (--mlmmj DIR)"
        )
        print(f"peers: {mlmmj}; {mailman_peer.describe(mailman, args.rounds)}")
    print()
    alone, joined, rescanned = per_copy(raw)
    print(
        f"CPU per copy, best of 5 x 2,000: copy {alone:.0f} us; copy + DATA form joined"
        f" {joined:.0f} us; copy + wire_form + smtplib's stuffing (before) {rescanned:.0f} us\n"
    )
    global LAUNCH
    LAUNCH = Launcher()
    sink = SinkProcess()
    try:
        print(
            f"{'sender':<38} {'members':>7} {'rcpt/s':>8} {'wall/s':>8} {'vs base':>8}"
            f" {'personal':>9} {'conns':>5} {'peak RSS':>9} {'CPU/rcpt':>9} {'sink/rcpt':>9}"
        )
        for n in args.members:
            rows, base = interleaved(sink, raw, n, args)
            if args.peers:
                for personal in (False, True):
                    if personal and n > 1000:
                        continue  # mlmmj 22/s, Mailman 30/s: minutes for nothing new
                    peer = run_mlmmj(sink, raw, n, personal, args.mlmmj) if personal else None
                    if peer is not None:
                        rows.append((peer, 0))
                    if mailman:
                        peer = run_mailman(sink, raw, n, personal, mailman, args.rounds)
                        rows.append((peer, 0))
            for m, peak in rows:
                ratio = m.rate / base.rate if base.rate else 0.0
                personal_text = f"{m.personalised}/{m.accepted}"
                print(
                    f"{m.label:<38} {n:>7} {m.rate:>8.0f} {m.wall_rate:>8.0f} {ratio:>7.2f}x"
                    f" {personal_text:>9} {m.connections:>5}"
                    f" {f'{peak / 2**20:.0f} MiB' if peak else '':>9}"
                    f" {f'{m.cpu_us:.0f} us' if m.cpu_us is not None else '':>9}"
                    f" {f'{m.sink_us:.0f} us':>9}"
                )
                if m.accepted != m.expected:
                    print(f"  !! {m.label}: {m.accepted} of {m.expected} recipients accepted")
        if args.memory:
            print("\npeak RSS of routemail run, 50 members, a 10 MB post against the 50 KB one:")
            big_raw = crlf(message(BIG_ATTACHMENT))
            for tree in (None, args.compare) if args.compare else (None,):
                for eol, small_post, big_post in (
                    ("CRLF", raw, big_raw),
                    ("LF", raw.replace(b"\r\n", b"\n"), big_raw.replace(b"\r\n", b"\n")),
                ):
                    small = run_routemail(sink, small_post, 50, tree=tree)[1]
                    big = run_routemail(sink, big_post, 50, tree=tree)[1]
                    print(
                        f"  {f'from {tree}, ' if tree else ''}{eol} line ends:"
                        f" {small / 2**20:.0f} MiB, {big / 2**20:.0f} MiB with"
                        f" {len(big_post) / 1e6:.1f} MB: {(big - small) / len(big_post):.2f}x"
                        " the message size more"
                    )
        if args.profile:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "run.prof"
                run_routemail(sink, raw, max(args.members), profile=path)
                show_profile(path)
    finally:
        sink.close()
        LAUNCH.close()


if __name__ == "__main__":
    main()
