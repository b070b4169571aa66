"""The spool on its own: the id rule, durable receipt, sidecars and the needs-processing bit."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routemail import sidecar
from routemail.errors import SpoolError, UnknownMessage
from routemail.identity import fingerprint, id_of_message, message_id_header, variant_id
from routemail.incoming import Receipt
from routemail.spool import Spool

ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
PASS = dict.fromkeys(sidecar.VERDICT_NAMES, "PASS")


def b64md5(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.md5(data).digest()).rstrip(b"=").decode()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    """An empty spool in a temporary directory."""
    return Spool(tmp_path / "maillist").ensure()


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_id_is_md5_of_message_id_with_brackets() -> None:
    """The id is base64url MD5 of the Message-ID value, angle brackets included, unpadded."""
    raw = b"From: a@example.com\r\nMessage-ID: <abc@example.com>\r\n\r\nbody\r\n"
    assert id_of_message(raw) == b64md5(b"<abc@example.com>")
    assert id_of_message(raw) == "pd3RcZn7Ax-dRjbnzHsKtg"


def test_message_id_name_is_case_insensitive_and_first_wins() -> None:
    """The header name matches in any case and only the first Message-ID counts."""
    raw = b"message-id:   <one@x>  \nMESSAGE-ID: <two@x>\n\nbody"
    assert message_id_header(raw) == b"<one@x>"


def test_no_message_id_uses_md5_of_raw_bytes() -> None:
    """A message without Message-ID is named by the MD5 of its raw bytes."""
    raw = b"From: a@example.com\r\nSubject: none\r\n\r\nMessage-ID: <in-body@x>\r\n"
    assert message_id_header(raw) is None
    assert id_of_message(raw) == b64md5(raw)


def test_empty_message_id_uses_md5_of_raw_bytes() -> None:
    """An empty Message-ID header counts as none."""
    raw = b"Message-ID:   \r\nSubject: x\r\n\r\nbody"
    assert id_of_message(raw) == b64md5(raw)


def test_folded_message_id_is_unfolded() -> None:
    """A folded Message-ID is unfolded (CRLF removed, whitespace kept) before hashing."""
    raw = b"Subject: x\r\nMessage-ID:\r\n <folded@example.com>\r\nTo: y@example.com\r\n\r\nb"
    assert message_id_header(raw) == b"<folded@example.com>"
    assert id_of_message(raw) == b64md5(b"<folded@example.com>")


def test_path_characters_land_safely(spool: Spool) -> None:
    """A Message-ID full of path characters becomes an ordinary file name inside QUEUE/."""
    raw = b"Message-ID: <../../etc/passwd>\r\n\r\nbody\r\n"
    receipt = spool.receive(raw, ["volunteers@lists.example.org"], PASS)
    assert receipt.id == b64md5(b"<../../etc/passwd>")
    assert ID_RE.match(receipt.id)
    assert sorted(p.name for p in spool.queue.iterdir()) == [receipt.id, receipt.id + ".data"]
    assert spool.read_message(receipt.id) == raw


def test_ten_kilobyte_message_id_lands_safely(spool: Spool) -> None:
    """A 10 KB Message-ID still gives a 22-character id and a queued message."""
    mid = b"<" + b"x" * 10_240 + b"@example.com>"
    raw = b"Message-ID: " + mid + b"\r\n\r\nbody\r\n"
    receipt = spool.receive(raw, ["board@lists.example.org"], PASS)
    assert receipt.id == b64md5(mid)
    assert spool.read_message(receipt.id) == raw


def test_receive_writes_message_and_pending_sidecar(spool: Spool) -> None:
    """A receipt leaves the exact bytes, the I line (the file's SHA-256), an R and a V line,
    and a 0600 sidecar."""
    raw = b"Message-ID: <r@x>\r\n\r\nhello\r\n"
    verdicts = {**PASS, "spf": "GRAY"}
    receipt = spool.receive(raw, ["a@lists.example.org", "b@lists.example.org"], verdicts)
    assert receipt.duplicate is False
    assert spool.message_path(receipt.id).read_bytes() == raw
    lines = spool.sidecar_path(receipt.id).read_text().splitlines()
    assert lines[0] == "I " + hashlib.sha256(raw).hexdigest()
    assert re.fullmatch(
        r"R \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ a@lists.example.org b@lists.example.org", lines[1]
    )
    assert lines[2] == "V PASS PASS GRAY PASS PASS"
    assert len(lines) == 3
    assert mode(spool.sidecar_path(receipt.id)) == 0o600
    assert spool.pending_ids() == [receipt.id]
    assert list(spool.tmp.iterdir()) == []


ORIGINAL = (
    b"Received: from mx1.example.com by inbound.example; Mon, 23 Nov 2026 10:00:00 +0000\n"
    b"X-SES-Receipt: first-delivery\n"
    b"From: Ann Author <ann@example.com>\n"
    b"To: volunteers@lists.example.org,\n board@lists.example.org\n"
    b"Subject: Saturday shift\n"
    b"Date: Mon, 23 Nov 2026 09:59:00 +0000\n"
    b"Message-ID: <dup@example.com>\n"
    b"\n"
    b"Who can cover Saturday?\n"
    b"-- Ann\n"
)
# The same message as a second delivery carries it: other trace fields, CRLF
# line ends, the To field unfolded.
REDELIVERED = (
    b"Received: from mx2.example.com by inbound.example; Mon, 23 Nov 2026 10:05:00 +0000\r\n"
    b"Received: from relay.example.net by mx2.example.com; Mon, 23 Nov 2026 10:04:00 +0000\r\n"
    b"X-SES-Receipt: second-delivery\r\n"
    b"Authentication-Results: amazonses.com; spf=pass\r\n"
    b"From: Ann Author <ann@example.com>\r\n"
    b"To: volunteers@lists.example.org, board@lists.example.org\r\n"
    b"Subject: Saturday shift\r\n"
    b"Date: Mon, 23 Nov 2026 09:59:00 +0000\r\n"
    b"Message-ID: <dup@example.com>\r\n"
    b"\r\n"
    b"Who can cover Saturday?\r\n"
    b"-- Ann\r\n"
)


def test_same_message_redelivered_joins_its_entry(spool: Spool) -> None:
    """A re-delivery of the same message (other Received and X-SES lines, CRLF, a refolded
    To) joins the first entry: the first file is kept, R/V appended, the bit set again."""
    a = spool.receive(ORIGINAL, ["volunteers@lists.example.org"], PASS)
    spool.set_pending(a.id, False)
    assert mode(spool.sidecar_path(a.id)) == 0o200
    b = spool.receive(REDELIVERED, ["board@lists.example.org"], PASS)
    assert (a.id, a.duplicate, b.duplicate) == (b.id, False, True)
    assert spool.read_message(a.id) == ORIGINAL
    assert spool.history(a.id).destinations == [
        "volunteers@lists.example.org",
        "board@lists.example.org",
    ]
    assert spool.is_pending(a.id)
    assert list(spool.tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Who can cover Saturday?", b"Who can cover Sunday?"),
        (b"From: Ann Author <ann@example.com>", b"From: Ann Author <mallory@evil.example>"),
        (b"Subject: Saturday shift", b"Subject: Saturday shift (updated)"),
        (b"Date: Mon, 23 Nov 2026 09:59:00", b"Date: Tue, 24 Nov 2026 09:59:00"),
        (b"To: volunteers@lists.example.org,", b"To: board@lists.example.org,"),
        (b"Subject: Saturday shift\n", b"Subject: Saturday shift\nReply-To: m@evil.example\n"),
    ],
    ids=["body", "from", "subject", "date", "to", "reply-to"],
)
def test_different_message_reusing_the_message_id_gets_its_own_entry(
    spool: Spool, old: bytes, new: bytes
) -> None:
    """A different message with a queued Message-ID never joins that entry: it gets the
    variant id of its fingerprint, and its own re-deliveries join it there."""
    other = ORIGINAL.replace(old, new)
    a = spool.receive(ORIGINAL, ["volunteers@lists.example.org"], PASS)
    spool.set_pending(a.id, False)
    before = spool.read_sidecar(a.id)
    b = spool.receive(other, ["board@lists.example.org"], PASS)
    assert b.id == variant_id(a.id, fingerprint(other))
    assert (b.id != a.id, b.duplicate) == (True, False)
    assert spool.read_sidecar(a.id) == before
    assert not spool.is_pending(a.id)
    assert (spool.read_message(a.id), spool.read_message(b.id)) == (ORIGINAL, other)
    assert spool.history(b.id).destinations == ["board@lists.example.org"]
    again = spool.receive(other.replace(b"first-delivery", b"later"), ["x@lists.example.org"], PASS)
    assert (again.id, again.duplicate) == (b.id, True)
    assert spool.receive(ORIGINAL, ["y@lists.example.org"], PASS) == Receipt(a.id, True)


def test_orphan_file_of_another_message_is_never_adopted(spool: Spool) -> None:
    """A message file left without a sidecar is not given one by a different message with
    its Message-ID (that one gets its own entry); the orphan's own retry adopts it."""
    msg_id = id_of_message(ORIGINAL)
    spool.message_path(msg_id).write_bytes(ORIGINAL)
    other = ORIGINAL.replace(b"Saturday?", b"Sunday?")
    receipt = spool.receive(other, ["board@lists.example.org"], PASS)
    assert receipt.id != msg_id
    assert not spool.sidecar_path(msg_id).exists()
    retry = spool.receive(REDELIVERED, ["volunteers@lists.example.org"], PASS)
    assert (retry.id, retry.duplicate) == (msg_id, False)
    assert spool.read_sidecar(msg_id).splitlines()[0] == (
        "I " + hashlib.sha256(ORIGINAL).hexdigest()
    )


def test_orphan_message_file_is_completed_by_the_retry(spool: Spool) -> None:
    """A message file left without a sidecar (crash between the two) is adopted by the retry."""
    raw = b"Message-ID: <orphan@x>\r\n\r\nbody\r\n"
    msg_id = id_of_message(raw)
    spool.message_path(msg_id).write_bytes(raw)
    receipt = spool.receive(raw, ["volunteers@lists.example.org"], PASS)
    assert receipt.duplicate is False
    assert spool.pending_ids() == [msg_id]


def test_concurrent_receipts_share_one_sidecar(spool: Spool) -> None:
    """Receipts in parallel threads each add their R line whole; exactly one is not a duplicate."""
    raw = b"Message-ID: <many@x>\r\n\r\nbody\r\n"
    results = []

    def one(n: int) -> None:
        results.append(spool.receive(raw, [f"list{n}@lists.example.org"], PASS))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not r.duplicate for r in results) == 1
    history = spool.history(results[0].id)
    assert len(history.destinations) == 20


def test_read_sidecar_of_done_entry(spool: Spool) -> None:
    """A done (0200) sidecar can still be read and keeps its mode afterwards."""
    receipt = spool.receive(b"Message-ID: <d@x>\r\n\r\nb", ["v@lists.example.org"], PASS)
    spool.set_pending(receipt.id, False)
    assert spool.read_sidecar(receipt.id).startswith("I ")
    assert mode(spool.sidecar_path(receipt.id)) == 0o200
    assert spool.pending_ids() == []


def test_unknown_entry_is_a_clear_error(spool: Spool) -> None:
    """Asking for an id that is not queued names it and points to `routemail queue`."""
    with pytest.raises(UnknownMessage, match="routemail queue"):
        spool.read_sidecar("nosuchid")


def test_unwritable_queue_raises_spool_error(tmp_path: Path) -> None:
    """A spool whose QUEUE is not a directory fails with a SpoolError naming it."""
    root = tmp_path / "maillist"
    root.mkdir()
    (root / "QUEUE").write_text("not a directory")
    with pytest.raises(SpoolError, match="QUEUE"):
        Spool(root).ensure()


def test_sidecar_parse_ignores_torn_last_line() -> None:
    """A last line without its newline (a write cut short) is not an event."""
    text = "R 2026-11-22T22:33:57Z v@lists.example.org\nV PASS PASS PASS PASS PASS\nS 2026-11-2"
    events = sidecar.parse(text)
    assert [e.code for e in events] == ["R", "V"]
    assert events[0].fields == ("v@lists.example.org",)


def test_sidecar_parse_skips_line_with_bad_time() -> None:
    """A timestamped line whose time cannot be read is skipped, the rest kept."""
    text = "R yesterday v@x\nS 2026-11-22T22:33:57Z ann@example.com\n"
    assert [(e.code, e.fields) for e in sidecar.parse(text)] == [("S", ("ann@example.com",))]


def test_sidecar_format_round_trips() -> None:
    """Every line type formats to one line that parses back to the same event."""
    when = sidecar.parse_time("2026-11-22T22:33:57Z")
    for code in "RXMALSFGKJEWD":
        ev = sidecar.event(code, "volunteers@lists.example.org", "ann@example.com", when=when)
        assert sidecar.parse(ev.format()) == [ev]
    # A newline inside a field can never start a forged line.
    forged = sidecar.event("F", "ann@example.com", "421 busy\nS 2026-01-01T00:00:00Z x", when=when)
    assert forged.format().count("\n") == 1
    assert [e.code for e in sidecar.parse(forged.format())] == ["F"]
    v = sidecar.verdicts_event(PASS)
    assert v.format() == "V PASS PASS PASS PASS PASS\n"
    assert sidecar.parse(v.format()) == [v]


header_line = st.tuples(
    st.sampled_from(["Message-ID", "message-id", "MESSAGE-ID", "Subject", "From", "X-Other", ""]),
    st.sampled_from([":", ": ", ":\t", "", " :"]),
    st.binary(max_size=300),
    st.sampled_from([b"\r\n", b"\n", b"\r\n ", b"\n\t", b""]),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(header_line, max_size=12), st.binary(max_size=200))
def test_any_header_block_gives_a_valid_id(
    lines: list[tuple[str, str, bytes, bytes]], body: bytes
) -> None:
    """Arbitrary header bytes never raise and always give a 22-character base64url id."""
    raw = b"".join(n.encode() + c.encode() + v + e for n, c, v, e in lines) + b"\r\n" + body
    assert ID_RE.match(id_of_message(raw))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(header_line, max_size=12),
    st.binary(max_size=200),
    st.lists(st.integers(min_value=1, max_value=400), max_size=8),
)
def test_streamed_id_matches_the_whole_message_id(
    lines: list[tuple[str, str, bytes, bytes]], body: bytes, cuts: list[int]
) -> None:
    """However the bytes arrive in chunks, Incoming names the message as id_of_message does
    (the MD5 of the raw bytes is dropped early only when a Message-ID makes it unneeded)."""
    raw = b"".join(n.encode() + c.encode() + v + e for n, c, v, e in lines) + b"\r\n" + body
    incoming = Spool(Path("/nonexistent")).incoming()  # nothing touches the disk before commit
    start = 0
    for size in cuts:
        incoming.write(raw[start : start + size])
        start += size
    incoming.write(raw[start:])
    assert incoming.id == id_of_message(raw)
    incoming.discard()


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=2000))
def test_arbitrary_bytes_are_received(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    """Any non-empty byte string is queued under a valid id with its exact bytes."""
    spool = Spool(tmp_path_factory.mktemp("s") / "maillist").ensure()
    receipt = spool.receive(raw, ["v@lists.example.org"], PASS)
    assert ID_RE.match(receipt.id)
    assert spool.read_message(receipt.id) == raw
    assert stat.S_IMODE(spool.sidecar_path(receipt.id).stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_owner_reads_done_sidecar_by_lending_the_bit() -> None:
    """A non-root owner reads a 0200 sidecar (via the lent bit), which stays 0200 afterwards."""
    # pytest's tmp_path sits under a 0700 root directory another user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="routemail-owner-"))
    try:
        base.chmod(0o755)
        _read_done_sidecar_as_nobody(Spool(base / "maillist").ensure())
    finally:
        shutil.rmtree(base)


def _read_done_sidecar_as_nobody(spool: Spool) -> None:
    receipt = spool.receive(b"Message-ID: <own@x>\r\n\r\nb", ["v@lists.example.org"], PASS)
    spool.set_pending(receipt.id, False)
    nobody = 65534
    for path in [spool.root, *spool.root.rglob("*")]:
        os.chown(path, nobody, nobody)
    # A forked child drops to that user: it needs no file access beyond the spool
    # (the interpreter under /root would be out of its reach).
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody)
            os.setuid(nobody)
            os.write(write_end, spool.read_sidecar(receipt.id).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert text.startswith("I ")
    assert mode(spool.sidecar_path(receipt.id)) == 0o200
