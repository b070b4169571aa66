"""Sidecar appends are whole lines or nothing; readers never merge lines."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

import pytest

from routemail import sidecar
from routemail.errors import SpoolError
from routemail.spool import Spool

PASS = dict.fromkeys(sidecar.VERDICT_NAMES, "PASS")
RAW = b"From: ann@example.com\nMessage-ID: <w@example.com>\n\nhello\n"
WHEN = sidecar.parse_time("2026-11-22T22:33:57Z")


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    """An empty spool in a temporary directory."""
    return Spool(tmp_path / "maillist").ensure()


def in_child_with_file_size_limit(limit: int, action: Callable[[], None]) -> str:
    """Run action in a forked child whose files may not grow past limit bytes
    (RLIMIT_FSIZE: the kernel's short write, then EFBIG); what it raised, or "ok"."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        outcome = "ok"
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            action()
        except BaseException as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


def test_append_that_does_not_fit_leaves_the_sidecar_as_it_was(spool: Spool) -> None:
    """An append cut short by the kernel (here a file size limit a few bytes past the end)
    raises, and the sidecar is cut back to its last complete line: nothing torn is left
    for the next writer to glue its line to."""
    msg_id = spool.receive(RAW, ["volunteers@lists.example.org"], PASS).id
    path = spool.sidecar_path(msg_id)
    before = path.read_bytes()
    line = sidecar.event(sidecar.SENT, "ann@example.com", when=WHEN)
    outcome = in_child_with_file_size_limit(
        len(before) + 10, lambda: spool.append(msg_id, [line, line])
    )
    assert "File too large" in outcome
    assert path.read_bytes() == before
    spool.append(msg_id, [line])
    assert path.read_bytes() == before + line.format().encode()


def test_duplicate_receipt_that_does_not_fit_is_refused_whole(spool: Spool) -> None:
    """A duplicate receipt whose R/V lines do not fit raises SpoolError (the receiver's
    503), and leaves no part of them behind."""
    msg_id = spool.receive(RAW, ["volunteers@lists.example.org"], PASS).id
    path = spool.sidecar_path(msg_id)
    before = path.read_bytes()

    def again() -> None:
        spool.receive(RAW, ["board@lists.example.org"], PASS)

    outcome = in_child_with_file_size_limit(len(before) + 40, again)
    assert outcome.startswith("SpoolError: cannot write to")
    assert path.read_bytes() == before
    assert spool.receive(RAW, ["board@lists.example.org"], PASS).duplicate


def test_first_receipt_that_does_not_fit_leaves_no_entry(spool: Spool) -> None:
    """When the message fits but its sidecar lines do not, no sidecar is left (an entry
    with no receipt); the message file waits for the sender's retry, which adopts it."""
    outcome = in_child_with_file_size_limit(
        len(RAW) + 30, lambda: spool.receive(RAW, ["volunteers@lists.example.org"], PASS)
    )
    assert outcome.startswith("SpoolError")
    assert spool.ids() == []
    retry = spool.receive(RAW, ["volunteers@lists.example.org"], PASS)
    assert not retry.duplicate
    assert spool.history(retry.id).destinations == ["volunteers@lists.example.org"]


def test_a_torn_last_line_is_cut_before_the_next_append(spool: Spool) -> None:
    """A line torn by a writer that died is cut off by the next writer, whose line then
    starts on a line of its own and is read back whole."""
    msg_id = spool.receive(RAW, ["volunteers@lists.example.org"], PASS).id
    path = spool.sidecar_path(msg_id)
    complete = path.read_bytes()
    with path.open("ab") as torn:
        torn.write(b"S 2026-11-22T22:3")
    assert [e.code for e in spool.history(msg_id).events] == ["R", "V"]
    spool.append(msg_id, [sidecar.event(sidecar.SENT, "bob@example.net", when=WHEN)])
    assert path.read_bytes() == complete + b"S 2026-11-22T22:33:57Z bob@example.net\n"
    assert spool.history(msg_id).sent_to == {"bob@example.net"}


def test_a_sidecar_holding_only_a_torn_line_counts_as_empty(spool: Spool) -> None:
    """A first receipt torn mid-line (its writer died) is cut: the retry's receipt is first."""
    msg_id = spool.receive(RAW, ["volunteers@lists.example.org"], PASS).id
    path = spool.sidecar_path(msg_id)
    whole = path.read_bytes()
    path.write_bytes(whole[:30])
    assert sidecar.parse(path.read_text()) == []
    retry = spool.receive(RAW, ["volunteers@lists.example.org"], PASS)
    assert (retry.id, retry.duplicate) == (msg_id, False)
    assert path.read_bytes().splitlines()[0] == whole.splitlines()[0]
    assert spool.history(msg_id).destinations == ["volunteers@lists.example.org"]


def test_only_newline_ends_a_line() -> None:
    """Other line-break characters (U+2028, NEL, form feed) never split a line: a text
    field cannot forge a second event."""
    text = "F 2026-11-22T22:33:57Z ann@example.com 421\u2028S 2026-11-22T22:33:57Z x@y\x85\x0c\n"
    events = sidecar.parse(text)
    assert [e.code for e in events] == ["F"]


def test_spool_error_names_the_queue_when_the_disk_refuses(spool: Spool) -> None:
    """The receiver's 503 comes from a SpoolError that names the queue directory."""
    outcome = in_child_with_file_size_limit(
        0, lambda: spool.receive(RAW.replace(b"<w@", b"<w2@"), ["v@lists.example.org"], PASS)
    )
    assert outcome.startswith(SpoolError.__name__)
    assert str(spool.queue) in outcome
