"""Copies in SMTP DATA form, joined from pieces prepared once per message: the same
bytes smtplib made of each copy by scanning it (line breaks, then dot-stuffing), and,
un-stuffed, exactly the copy the outbox and SES take."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routemail.copy import CopyError, CopyMaker
from routemail.copyheaders import ListIdentity
from routemail.transports.wire import (
    CRLF,
    WRITE_BYTES,
    Prepared,
    WireParts,
    dot_stuffed,
    smtp_data,
    smtp_pieces,
    unstuffed,
    wire_form,
    writes,
)
from tests.copy_support import NOW, RECIPIENT, identity
from tests.test_copy_properties import body_lines, header_names, header_values

INPUTS = sorted((Path(__file__).parent / "data" / "copy" / "in").glob("*.eml"))
# Templates whose lines start with dots, at the start and end of their slots.
DOTTED = {
    "header": ".{recipient}\n..two dots",
    "footer": ".\n.. {list}\nLeave: {unsubscribe_url}\n.",
}
IDENTITIES = {"default": identity(), "dotted": identity(**DOTTED)}


def smtplib_data(message: bytes) -> bytes:
    """What the SMTP transport sent after 354 before: wire_form(), then smtplib.SMTP.data's
    dot-stuffing, final CR LF and closing dot (its helper, used as the reference)."""
    data = smtplib._quote_periods(wire_form(message))  # type: ignore[attr-defined]
    return (data if data.endswith(CRLF) else data + CRLF) + b".\r\n"


def check_data_form(copy: bytes) -> None:
    """The copy's DATA form is what smtplib made of it, and un-stuffs to the copy."""
    assert isinstance(copy, Prepared)
    data = smtp_data(copy)
    assert data == smtplib_data(bytes(copy))
    expected = wire_form(bytes(copy))
    assert data.endswith(b"\r\n.\r\n")
    assert unstuffed(data[:-3]) == (expected if expected.endswith(CRLF) else expected + CRLF)
    assert data.count(b"\n") == data.count(CRLF) == data.count(b"\r")
    assert b"\x00" not in data
    # Answered from the pieces (what BODY=8BITMIME depends on), as bytes would answer.
    assert copy.isascii() == bytes(copy).isascii()


def make(raw: bytes, ident: ListIdentity) -> bytes | None:
    try:
        return CopyMaker(raw, ident, now=NOW).copy_for(RECIPIENT)
    except CopyError as exc:
        assert not exc.unexpected, exc
        return None


@pytest.mark.parametrize("eol", [b"\n", CRLF], ids=["lf", "crlf"])
@pytest.mark.parametrize("name", IDENTITIES)
@pytest.mark.parametrize("path", INPUTS, ids=[p.stem for p in INPUTS])
def test_golden_copies_in_data_form(path: Path, name: str, eol: bytes) -> None:
    """Every golden message, with LF or CRLF line breaks, on a list with the default
    footer and one whose templates start lines with dots, joins to smtplib's bytes."""
    raw = path.read_bytes().replace(CRLF, b"\n")
    copy = make(raw.replace(b"\n", eol), IDENTITIES[name])
    assert copy is not None
    check_data_form(copy)


@pytest.mark.parametrize(
    ("body", "footer", "ascii"),
    [
        (b"Plain words.\n", "Leave: {unsubscribe_url}", True),
        ("Gr\u00fc\u00dfe.\n".encode(), "Leave: {unsubscribe_url}", False),
        (b"Plain words.\n", "Gr\u00fc\u00dfe, {recipient}", False),
    ],
    ids=["ascii", "utf-8 post", "utf-8 in the footer"],
)
def test_a_copy_knows_whether_it_is_ascii_from_its_pieces(
    body: bytes, footer: str, ascii: bool
) -> None:
    """Non-ASCII in the shared post, or only in each member's own footer."""
    raw = (
        b"From: ann@example.com\nTo: team@lists.example.org\nSubject: Hi\n"
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + body
    )
    copy = CopyMaker(raw, identity(footer=footer), now=NOW).copy_for(RECIPIENT)
    assert isinstance(copy, Prepared)
    assert copy.isascii() is ascii
    assert bytes(copy).isascii() is ascii


def test_the_splice_is_used_for_the_golden_copies() -> None:
    """The prepared pieces join for every golden copy: the whole-copy fallback is for
    pieces ending in a bare CR only."""
    for path in INPUTS:
        copy = CopyMaker(path.read_bytes(), identity(**DOTTED), now=NOW).copy_for(RECIPIENT)
        assert isinstance(copy, Prepared)
        pieces = copy._data()
        assert pieces is not None and b"".join(pieces) == smtp_data(copy), path.name


dotted_lines = st.one_of(
    body_lines, st.sampled_from([b".", b"..", b".hidden", b"\r.\r", b".\r", b"\x00.", b""])
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(header_names, header_values), min_size=1, max_size=8),
    st.lists(dotted_lines, max_size=30),
    st.sampled_from([b"\n", CRLF, b"\r"]),
    st.sampled_from(sorted(IDENTITIES)),
)
def test_any_copy_joins_to_what_smtplib_sent(
    fields: list[tuple[str, bytes]], lines: list[bytes], nl: bytes, name: str
) -> None:
    """Message-shaped input, broken and dotted however, gives the same DATA bytes."""
    raw = b"".join(n.encode() + b":" + v + nl for n, v in fields) + nl + nl.join(lines)
    copy = make(raw, IDENTITIES[name])
    if copy is not None:
        check_data_form(copy)


@pytest.mark.parametrize(
    ("pieces", "filled", "expected"),
    [
        ([b".a\n", None, b"b\n"], [b".c\n.d\n"], b"..a\r\n..c\r\n..d\r\nb\r\n.\r\n"),
        ([b"x", None, b".y"], [b".z"], b"x.z.y\r\n.\r\n"),
        ([b"x\n", None, b".y\n"], [b""], b"x\r\n..y\r\n.\r\n"),
        ([b"a\r\n", None, b"\n.b"], [b"\x00"], b"a\r\n\r\n..b\r\n.\r\n"),
        ([], [], b"\r\n.\r\n"),
    ],
)
def test_dots_are_stuffed_where_a_piece_starts_a_line(
    pieces: list[bytes | None], filled: list[bytes], expected: bytes
) -> None:
    """A dot at the start of a piece is doubled only when the piece starts a line."""
    assert WireParts(pieces).join(filled) == expected
    assert expected == smtplib_data(b"".join(p if p is not None else filled[0] for p in pieces))


def test_a_line_break_split_between_pieces_falls_back_to_the_whole_copy() -> None:
    """A slot ending in a bare CR before a piece starting with LF is one line break:
    the join declines, and the copy's DATA form is made from the whole copy."""
    parts = WireParts([b"a\n", None, b"\nb\n"])
    assert parts.join([b"x\r"]) is None
    copy = Prepared(b"a\nx\r\nb\n", lambda: parts.pieces_for([b"x\r"]))
    assert smtp_data(copy) == b"a\r\nx\r\nb\r\n.\r\n"
    assert not WireParts([b"a\r", None]).usable


def test_plain_bytes_are_stuffed_without_a_prepared_copy() -> None:
    """Notices and outgoing mail (plain bytes) get the same DATA form by a whole pass."""
    raw = b".start\n.\nmiddle\r.\r\nend"
    assert smtp_data(raw) == smtplib_data(raw) == b"..start\r\n..\r\nmiddle\r\n..\r\nend\r\n.\r\n"
    assert unstuffed(dot_stuffed(b".a\r\n..b\r\n")) == b".a\r\n..b\r\n"


def test_pieces_already_in_data_form_are_not_copied() -> None:
    """A shared piece of a CRLF message with no line starting with a dot goes into
    DATA as the view into the message it is (no copy kept per message)."""
    message = b"Subject: x\r\n\r\nbody line\r\nmore\r\n"
    clean, dotted = memoryview(message)[:20], memoryview(message)[20:]
    parts = WireParts([clean, None, dotted])
    assert parts.pieces[0] is clean
    assert parts.pieces[2] is dotted
    assert WireParts([memoryview(b"a\r\n.b\r\n")]).pieces[0] == b"a\r\n..b\r\n"
    assert parts.join([b".x\n"]) == smtplib_data(message[:20] + b".x\n" + message[20:])


def test_a_big_copy_is_written_from_the_shared_pieces_not_joined_again() -> None:
    """Small pieces go together into writes of at least WRITE_BYTES; a big shared
    piece (an attachment) is written as the view into the message it is."""
    body = b"line of an attachment\r\n" * (WRITE_BYTES // 20)
    message = b"Subject: x\r\n\r\n" + body
    head, big = memoryview(message)[:15], memoryview(message)[15:]
    parts = WireParts([head, None, big])
    pieces = parts.pieces_for([b"footer for bob\r\n"])
    assert pieces is not None
    chunks = writes(pieces)
    assert any(chunk is big for chunk in chunks)
    assert b"".join(chunks) == parts.join([b"footer for bob\r\n"])
    assert writes([b"a", b"b", b"c"], at_least=2) == [b"ab", b"c"]
    copy = Prepared(message, lambda: parts.pieces_for([b""]))
    assert b"".join(smtp_pieces(copy)) == smtp_data(copy) == smtplib_data(message)
