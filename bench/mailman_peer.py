"""GNU Mailman 3 as a peer in bench/delivery.py: posts to a list of n members.

Mailman lives in a virtualenv of its own, outside the project (bench/RESULTS.md says
how to make one). Each run makes a throwaway instance in a temporary folder: its own
mailman.cfg (var_dir there, SQLite, the sink as its outgoing SMTP server, no incoming
MTA) and one list with n pre-verified members, used for every round. Each round puts
the post in Mailman's `in` queue, as its LMTP server would leave it, and then the
runners a post goes through (in, pipeline, out) each run once over their queue, one
after the other; the sink measures from the first MAIL to the last accepted message.
Nothing before the first MAIL counts in the rate.

This file is also the program that makes the list and posts to it: bench/delivery.py
imports it, and runs it with the virtualenv's Python (`VENV/bin/python
bench/mailman_peer.py CFG make MEMBERS MODE`, `... CFG inject POST`), where only the
standard library and Mailman are imported.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

LIST = "volunteers@lists.example.org"
RUNNERS = ("in", "pipeline", "out")  # the queues a post to a list goes through
VENV_VARIABLE = "MAILMAN_VENV"


class Sink(Protocol):
    """What the driver needs of bench/delivery.py's SinkProcess."""

    port: int

    def ask(self, what: str) -> dict[str, float]: ...

    def wait_for(self, recipients: int, timeout: float = ...) -> dict[str, float]: ...


def find(venv: str | None) -> Path | None:
    """The virtualenv holding Mailman (--mailman, else $MAILMAN_VENV), or None when
    neither is given; a folder given that holds no Mailman stops the benchmark."""
    where = venv or os.environ.get(VENV_VARIABLE)
    if not where:
        return None
    if not (Path(where) / "bin" / "runner").exists():
        sys.exit(
            f"{where} holds no GNU Mailman 3 (no bin/runner): bench/RESULTS.md says how to"
            " make its virtualenv"
        )
    return Path(where)


def describe(venv: Path | None, rounds: int) -> str:
    """One line for the benchmark's heading: which Mailman, or how to give one."""
    if venv is None:
        return f"Mailman 3: not installed (--mailman VENV or ${VENV_VARIABLE})"
    probe = "from mailman.version import MAILMAN_VERSION_FULL as v; print(v)"
    version = subprocess.run(
        [venv / "bin" / "python", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()  # e.g. "GNU Mailman 3.3.10 (Tom Sawyer)"
    return f"{version} from {venv}, median of {rounds} posts to one list"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(folder: Path, sink_port: int) -> Path:
    cfg = folder / "mailman.cfg"
    cfg.write_text(
        f"""\
[mailman]
layout: bench
site_owner: admin@example.org

[paths.bench]
var_dir: {folder / "var"}

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///{folder / "var" / "data" / "mailman.db"}

[mta]
incoming: mailman.mta.null.NullMTA
smtp_host: 127.0.0.1
smtp_port: {sink_port}
lmtp_host: 127.0.0.1
lmtp_port: {free_port()}

[webservice]
hostname: 127.0.0.1
port: {free_port()}
"""
    )
    return cfg


class MailmanList:
    """A throwaway Mailman instance with one list of the members, in a temporary
    folder, for as many posts as asked (the members are subscribed once: 10,000 take
    Mailman about 100 s here)."""

    def __init__(self, venv: Path, sink: Sink, members: list[str], personalize: bool) -> None:
        self.venv, self.sink, self.members = venv, sink, members
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-mailman-")
        self.folder = Path(self._tmp.name)
        self.cfg = write_config(self.folder, sink.port)
        addresses = self.folder / "members.txt"
        addresses.write_text("".join(f"{m}\n" for m in members))
        self._mailman("make", str(addresses), "full" if personalize else "none")

    def __enter__(self) -> MailmanList:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def deliver(self, raw: bytes) -> tuple[dict[str, float], float]:
        """raw posted to the list and delivered through the sink: the sink's counts and
        the wall time of the three runners (their start-up included)."""
        post = self.folder / "post.eml"
        post.write_bytes(raw)
        self._mailman("inject", str(post))
        self.sink.ask("reset")
        start = time.perf_counter()
        for runner in RUNNERS:
            self._run("runner", "-C", str(self.cfg), "-r", runner, "--once")
        counts = self.sink.wait_for(len(self.members), timeout=30)
        wall = time.perf_counter() - start
        left = leftovers(self.folder / "var" / "queue")
        if left:
            print(f"  !! Mailman left messages in its queues: {left}", file=sys.stderr)
        return counts, wall

    def _mailman(self, command: str, *args: str) -> None:
        """This file's make or inject, run by the virtualenv's Python."""
        self._run("python", __file__, str(self.cfg), command, *args)

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [self.venv / "bin" / program, *args], cwd=self.folder, capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(f"{program} {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")


def leftovers(queues: Path) -> dict[str, int]:
    """Queue files left behind (shunt: an error; bad: a message Mailman could not
    parse; retry: a delivery to try again), but for the archive queue: its runner
    hands the post to the archivers, and none is enabled."""
    left = {q.name: len(list(q.glob("*.pck"))) for q in queues.iterdir() if q.is_dir()}
    return {name: count for name, count in left.items() if count and name != "archive"}


# -- run by the Python of Mailman's virtualenv ------------------------------------


def make_list(addresses: str, personalize: str) -> None:
    """The list with the members in the file addresses (one a line).

    Members are pre-verified and subscribed without a welcome message; the author is
    not a member, so the list accepts non-members' posts; no size limit (Mailman's
    default, 40 KB, would hold the 50 KB post) and no digests."""
    from mailman.app.lifecycle import create_list
    from mailman.config import config
    from mailman.interfaces.action import Action
    from mailman.interfaces.domain import IDomainManager
    from mailman.interfaces.mailinglist import Personalization
    from mailman.interfaces.usermanager import IUserManager
    from mailman.utilities.datetime import now
    from zope.component import getUtility

    getUtility(IDomainManager).add(LIST.split("@")[1])
    mlist = create_list(LIST, owners=["admin@example.org"])
    mlist.send_welcome_message = False
    mlist.admin_notify_mchanges = False
    mlist.default_nonmember_action = Action.accept
    mlist.max_message_size = 0
    mlist.digests_enabled = False
    mlist.personalize = Personalization[personalize]
    users = getUtility(IUserManager)
    for member in Path(addresses).read_text().split():
        address = users.create_address(member)
        address.verified_on = now()
        mlist.subscribe(address)
    config.db.commit()


def inject(post: str) -> None:
    """The post in the list's `in` queue, as Mailman's LMTP server leaves it."""
    import email

    from mailman.app.inject import inject_message
    from mailman.config import config
    from mailman.email.message import Message
    from mailman.interfaces.listmanager import IListManager
    from zope.component import getUtility

    mlist = getUtility(IListManager).get(LIST)
    with open(post, "rb") as f:
        msg = email.message_from_binary_file(f, Message)
    inject_message(mlist, msg, to_list=True)
    config.db.commit()


if __name__ == "__main__":  # CFG make MEMBERS MODE | CFG inject POST
    from mailman.core.initialize import initialize

    initialize(sys.argv[1])
    if sys.argv[2] == "make":
        make_list(sys.argv[3], sys.argv[4])
    else:
        inject(sys.argv[3])
