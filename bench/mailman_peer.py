"""GNU Mailman 3 as a peer in bench/delivery.py: one post to a list of n members.

Mailman lives in a virtualenv of its own, outside the project (bench/RESULTS.md says
how to make one). Each run makes a throwaway instance in a temporary folder: its own
mailman.cfg (var_dir there, SQLite, the sink as its outgoing SMTP server, no incoming
MTA), one list with n pre-verified members and the post in Mailman's `in` queue, as
its LMTP server would leave it. That set-up is not timed. Then the runners a post goes
through (in, pipeline, out) each run once over their queue, one after the other, and
the sink measures from the first MAIL to the last accepted message.

This file is also the program that makes the list: bench/delivery.py imports it, and
runs it with the virtualenv's Python (`VENV/bin/python bench/mailman_peer.py CFG
MEMBERS MODE POST`), where only the standard library and Mailman are imported.
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
    """The virtualenv holding Mailman (--mailman, else $MAILMAN_VENV), or None."""
    where = venv or os.environ.get(VENV_VARIABLE)
    if not where or not (Path(where) / "bin" / "runner").exists():
        return None
    return Path(where)


def version(venv: Path) -> str:
    """Mailman's own version line, e.g. "GNU Mailman 3.3.10 (Tom Sawyer)"."""
    probe = "from mailman.version import MAILMAN_VERSION_FULL as v; print(v)"
    return subprocess.run(
        [venv / "bin" / "python", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()


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


def deliver(
    venv: Path, sink: Sink, raw: bytes, members: list[str], personalize: bool
) -> tuple[dict[str, float], float]:
    """Mailman delivering raw to the members through the sink: the sink's counts and
    the wall time of the three runners (their start-up included)."""
    with tempfile.TemporaryDirectory(prefix="bench-mailman-") as tmp:
        folder = Path(tmp)
        cfg = write_config(folder, sink.port)
        post = folder / "post.eml"
        post.write_bytes(raw)
        addresses = folder / "members.txt"
        addresses.write_text("".join(f"{m}\n" for m in members))
        mode = "full" if personalize else "none"
        _run([venv / "bin" / "python", __file__, str(cfg), str(addresses), mode, str(post)], folder)
        sink.ask("reset")
        start = time.perf_counter()
        for runner in RUNNERS:
            _run([venv / "bin" / "runner", "-C", str(cfg), "-r", runner, "--once"], folder)
        counts = sink.wait_for(len(members), timeout=30)
        wall = time.perf_counter() - start
        left = leftovers(folder / "var" / "queue")
        if left:
            print(f"  !! Mailman left messages in its queues: {left}", file=sys.stderr)
    return counts, wall


def _run(argv: list[Path | str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(
            f"{Path(argv[0]).name} {' '.join(map(str, argv[1:]))} exited "
            f"{done.returncode}:\n{done.stderr[-2000:]}"
        )


def leftovers(queues: Path) -> dict[str, int]:
    """Queue files left behind (shunt: an error; bad: a message Mailman could not
    parse; retry: a delivery to try again), but for the archive queue: its runner
    hands the post to the archivers, and none is enabled."""
    left = {q.name: len(list(q.glob("*.pck"))) for q in queues.iterdir() if q.is_dir()}
    return {name: count for name, count in left.items() if count and name != "archive"}


# -- run by the Python of Mailman's virtualenv ------------------------------------


def make_list(cfg: str, addresses: str, personalize: str, post: str) -> None:
    """The list with the members in the file addresses (one a line), and the post
    in the `in` queue as LMTP leaves it.

    Members are pre-verified and subscribed without a welcome message; the author is
    not a member, so the list accepts non-members' posts; no size limit (Mailman's
    default, 40 KB, would hold the 50 KB post) and no digests."""
    from mailman.core.initialize import initialize

    initialize(cfg)

    import email

    from mailman.app.inject import inject_message
    from mailman.app.lifecycle import create_list
    from mailman.config import config
    from mailman.email.message import Message
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
    with open(post, "rb") as f:
        msg = email.message_from_binary_file(f, Message)
    inject_message(mlist, msg, to_list=True)
    config.db.commit()


if __name__ == "__main__":
    make_list(*sys.argv[1:5])
