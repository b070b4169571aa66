"""Work per message grows linearly with its size: hostile shapes at 10 KB and 1 MB still
give a copy, and every scan that used to be quadratic is pinned down here."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from routemail import addresses, feedback
from routemail.config import VERDICT_NAMES
from routemail.copy import MAX_HEADER_BYTES, CopyError, CopyMaker, _boundary
from routemail.message import Headers
from routemail.rewrite import headers, mime
from routemail.spool import Spool
from tests.conftest import BASE_CONFIG, Project
from tests.copy_support import RECIPIENT, check_sendable, check_wire, identity
from tests.hostile import BY_NAME, SHAPES, Shape, fill

SIZES = [10_000, 1_000_000]
PARSED_SLOWLY = {"many_parts"}  # Python's own parser takes ~20 s on it at 1 MB


def make_copy(raw: bytes) -> tuple[CopyMaker, bytes]:
    maker = CopyMaker(raw, identity(header="Hi {recipient}"))
    return maker, maker.copy_for(RECIPIENT)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_hostile_shape_gives_a_sendable_copy(shape: Shape, size: int) -> None:
    """Each hostile shape gives a copy with the header and footer somewhere, whose lines
    and header block are sendable; a header block over the limit is refused instead."""
    raw = shape.build(size)
    if shape.in_header and size > MAX_HEADER_BYTES:
        with pytest.raises(CopyError, match="header block is") as info:
            make_copy(raw)
        assert not info.value.unexpected
        return
    maker, data = make_copy(raw)
    assert maker.decorated or maker.wrapped
    if size > 10_000 and shape.name in PARSED_SLOWLY:
        check_wire(data)
    else:
        check_sendable(data)


def html_of(data: bytes) -> str:
    msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    return msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_html_header_goes_after_the_first_body_tag() -> None:
    """The header goes after the first <body ...> tag and the footer before the first
    closing tag after it, however many unclosed `<body` follow."""
    html = b"<html><body class=x>Hi<body<body" + b"<body" * 1000 + b"</body></html>"
    _, data = make_copy(BY_NAME["body_open"].build(0) + html)
    text = html_of(data)
    assert text.startswith('<html><body class=x>\n<div class="list-header">Hi member@')
    assert text.index('<div class="list-footer">') > text.index("<body<body")
    assert text.endswith("</div>\n</body></html>")


@pytest.mark.parametrize("charset", ["utf-8", "utf-16le"])
def test_unclosed_body_tags_leave_the_header_at_the_start(charset: str) -> None:
    """`<body` with no `>` anywhere is no body tag: the header goes first, as without one."""
    raw = BY_NAME["body_open"].build(0).replace(b"utf-8", charset.encode())
    _, data = make_copy(raw + ("<body" * 2000).encode(charset))
    assert html_of(data).startswith('<div class="list-header">Hi member@example.net</div>\n<body')


def test_long_line_search_finds_only_lines_over_998() -> None:
    """The anchored long-line patterns find a 999-byte line and nothing shorter."""
    ok = fill(b"y" * 998 + b"\n", 50_000)
    assert not mime._LONG_LINE.search(ok)
    assert mime._LONG_LINE.search(ok + b"z" * 999)
    assert not headers.needs_cleaning(headers.Field("X-A", b" " + b"a" * 990))
    assert headers.needs_cleaning(headers.Field("X-A", b"\n " + b"a" * 999))


def test_boundary_is_free_however_many_candidates_the_message_holds() -> None:
    """The wrapping boundary is one the message lacks, even when it holds the first
    thousands the router would try (each `_N` also appears as a prefix of `_N0`)."""
    body = b"x" * 70_000
    prefix = b"--=_routemail_" + hashlib.sha256(body[:65536]).hexdigest()[:20].encode() + b"_"
    taken = b"".join(prefix + str(n).encode() + b"0\n" for n in range(3000))
    boundary = _boundary(body + taken)
    assert boundary.startswith(prefix[2:])
    assert b"--" + boundary not in body + taken


def test_long_content_fields_are_dropped_not_parsed() -> None:
    """Content-* fields over the parser's limit are dropped: the part is read as plain text."""
    raw = BY_NAME["param_semicolons"].build(headers.MAX_PARSED + 1)
    maker, data = make_copy(raw)
    assert any("dropped Content-* fields" in p for p in maker.problems)
    assert check_sendable(data).get_content_type() == "text/plain"


def test_parts_past_the_budget_are_sent_unread() -> None:
    """A message with more parts than MAX_PARTS gets its copy: the parts past the budget
    go byte for byte, unread, closing delimiter included."""
    raw = BY_NAME["many_parts"].build((mime.MAX_PARTS + 5) * 60)
    maker, data = make_copy(raw)
    assert any(f"more than {mime.MAX_PARTS} MIME parts" in p for p in maker.problems)
    check_wire(data)
    tail = raw[raw.index(b'charset="x-%d"' % (mime.MAX_PARTS - 1)) :]
    assert data.endswith(tail)
    # compat32 records the same structure defects as policy.strict, ten times faster here.
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    assert not [d for p in parsed.walk() for d in p.defects]
    assert len(parsed.get_payload()) == mime.MAX_PARTS + 5


def test_parts_past_the_budget_without_a_close_get_one() -> None:
    """With the closing delimiter missing, the unread parts are kept and the close added."""
    raw = BY_NAME["many_parts"].build((mime.MAX_PARTS + 5) * 60).removesuffix(b"--b--\n")
    _, data = make_copy(raw)
    assert data.endswith(raw[-200:] + b"\n--b--\n")


def test_long_lines_past_the_budget_hold_the_message() -> None:
    """A line over 998 octets among the unread parts cannot be sent: no copy, a reason."""
    raw = BY_NAME["many_parts"].build((mime.MAX_PARTS + 5) * 60)
    raw = raw.replace(b"part\n--b--", b"x" * 1000 + b"\n--b--")
    with pytest.raises(CopyError, match="lines over 998 octets") as info:
        make_copy(raw)
    assert not info.value.unexpected


def test_parts_nested_past_the_limit_are_sent_unread() -> None:
    """Nesting deeper than MAX_DEPTH becomes one application/octet-stream part."""
    _, data = make_copy(BY_NAME["deep_nesting"].build(100 * 60))
    types = [p.get_content_type() for p in check_sendable(data).walk()]
    # The levels read, plus the wrapper that carries the header and footer (no text
    # part was read to carry them).
    assert types.count("multipart/mixed") == mime.MAX_DEPTH + 1
    assert mime.UNREAD in types


@pytest.mark.parametrize("text", ["(" * 5000 + "a@example.org", "a@example.org" + "(" * 5000])
def test_nested_comments_never_raise(text: str) -> None:
    """Thousands of nested comments make the address parser recurse too deep: no address."""
    assert addresses.normalize(text) is None
    assert headers.parse_addresses(text) == []
    raw = f"From: {text}\nTo: {text}\nReply-To: {text}\n\nHi\n".encode()
    assert Headers.of(raw).author.address is None
    maker, data = make_copy(raw)
    check_sendable(data)
    assert any("From" in p for p in maker.problems)


def test_dsn_reading_is_bounded() -> None:
    """Only the first DSN_READ_LIMIT bytes of a bounce are read for failed recipients: a
    report in them is found, whatever follows it."""
    report = (
        b"From: MAILER-DAEMON@example.net\nTo: volunteers-bounces@lists.example.org\n"
        b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n\n'
        b"--r\nContent-Type: text/plain\n\nDelivery failed.\n"
        b"--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        b"Final-Recipient: rfc822; gone@example.net\nAction: failed\nStatus: 5.1.1\n\n"
        b"--r\nContent-Type: text/plain\n\n"
    )
    hostile = report + fill(b"@\n", 4_000_000) + b"\n--r--\n"
    assert feedback.dsn_failures(hostile) == (set(), {"gone@example.net"})
    late = fill(b"x\n", feedback.DSN_READ_LIMIT) + report
    assert feedback.dsn_failures(late) == (set(), set())


def test_routemail_run_copies_a_hostile_message_within_a_cpu_bound(project: Project) -> None:
    """`routemail run` delivers a 4 MB HTML part of `<body` repeated. Not a timing: the run
    gets 120 s of CPU, where the quadratic footer search needed ~1,000 s for this size and
    the linear one needs a fraction of a second; wall-clock load does not count."""
    project.write_config(BASE_CONFIG + "\n[delivery]\nrate = 1000\n")
    raw = BY_NAME["body_open"].build(4_000_000)
    Spool(project.data_dir / "maillist").ensure().receive(
        raw, ["volunteers@lists.example.org"], dict.fromkeys(VERDICT_NAMES, "PASS")
    )

    def limit_cpu() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (120, 120))

    result = subprocess.run(
        [sys.executable, "-m", "routemail", "run"],
        env=project.env(),
        capture_output=True,
        text=True,
        preexec_fn=limit_cpu,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    copies = list(Path(project.data_dir, "maillist", "outbox", "new").iterdir())
    assert len(copies) == 3
    for path in copies:
        data = path.read_bytes()
        assert b"list-footer" in data
        check_wire(data.split(b"\n", 2)[2])  # past Return-Path and Delivered-To


def test_long_header_values_are_left_encoded() -> None:
    """Encoded words in a value over MAX_PARSED stay as they are (decoding them is
    quadratic in their number); shorter values are decoded as before."""
    long_subject = fill(b"=?utf-8?q?caf=C3=A9?= ", headers.MAX_PARSED + 1)
    raw = BY_NAME["long_subject"].build(0).replace(b"Subject: ", b"Subject: " + long_subject)
    assert Headers.of(raw).subject == long_subject.decode().strip()
    assert headers.decode_words(long_subject.decode()) == long_subject.decode().strip()
    short = b"Subject: =?utf-8?q?caf=C3=A9?=\n\nx\n"
    assert Headers.of(short).subject == "café"
    assert headers.decode_words("=?utf-8?q?caf=C3=A9?=") == "café"


def test_charset_with_a_nul_is_an_unknown_charset() -> None:
    """A charset name holding NUL is unknown (codecs.lookup raised ValueError, so the copy
    failed as a bug of the router instead of reading the part as ASCII)."""
    raw = b'From: a@example.org\nContent-Type: text/plain; charset="utf\x00-8"\n\nHi\n'
    maker, data = make_copy(raw)
    assert maker.decorated == ["text/plain"]  # ASCII text: decorated as ASCII
    check_sendable(data)
