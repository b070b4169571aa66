"""The form a message takes on its way out: one kind of line break throughout, no NUL.

A bare CR or LF inside a message (in a broken or hostile original attached to a
notice, say) ends a line for some servers and not for others: "\\r.\\r\\n" followed by
"MAIL FROM:" is the SMTP smuggling pattern, a second message hidden in the first. NUL
is refused or mangled by many servers. So every message routemail hands to SMTP or SES
goes through wire_form() first, the one place where this is decided: each CR, LF and
CR LF becomes CR LF, and NUL bytes are dropped.

The outbox is a Maildir, where local delivery conventionally stores LF line breaks;
it keeps each message's own line break (LF or CRLF) with the same cleaning, through
line_breaks().
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

CRLF = b"\r\n"
LF = b"\n"
NUL = b"\x00"
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
# What keeps a piece from going into DATA as it is: NUL, a bare CR or LF, a line
# starting with a dot.
_NEEDS_WORK = re.compile(rb"\x00|\r(?!\n)|(?<!\r)\n|\n\.")


def wire_form(message: bytes) -> bytes:
    """message as it goes to SMTP and SES: CRLF line breaks only, no NUL."""
    return line_breaks(message, CRLF)


def line_breaks(message: bytes, eol: bytes) -> bytes:
    """message with every CR, LF and CR LF made eol (CRLF or LF) and NUL bytes dropped.

    The usual cases (already clean, or LF-only on its way to CRLF) cost a few
    byte counts and at most one replace, not a regular expression."""
    if NUL in message:
        message = message.replace(NUL, b"")
    crs = message.count(b"\r")
    if crs == 0:
        return message if eol == LF else message.replace(LF, CRLF)
    if eol == CRLF and crs == message.count(LF) == message.count(CRLF):
        return message
    return _LINE_BREAK.sub(eol, message)


def own_line_break(message: bytes) -> bytes:
    """The line break a message's first line ends with (LF when it has none)."""
    first = message.find(LF)
    return CRLF if first > 0 and message[first - 1 : first] == b"\r" else LF


# -- SMTP DATA form ------------------------------------------------------------------
#
# Inside DATA a line that starts with "." gets a second one (RFC 5321 4.5.2), and the
# content ends with CR LF before the closing ".". smtplib does both with regular
# expressions over the whole message, once per copy; a copy made by routemail.copy
# is joined from pieces already in this form instead (WireParts, Prepared).

DOT = b"."
END_OF_DATA = b".\r\n"
_DOT = ord(DOT)
_LF = ord(LF)


# A copy's DATA form is written in pieces of about this size or more: small
# neighbours joined into one write, a big shared piece (an attachment) written
# from the message itself, so a big copy is never joined a second time.
WRITE_BYTES = 256 * 1024

Piece = bytes | memoryview


def smtp_data(message: bytes) -> bytes:
    """What follows DATA's 354 for message: its wire form dot-stuffed, ending in CR LF,
    then the closing "." line, ready for one write."""
    if isinstance(message, Prepared):
        return message.smtp_data()
    return _closed(dot_stuffed(wire_form(message)))


def smtp_pieces(message: bytes) -> list[Piece]:
    """smtp_data(message) as pieces to write in order; a copy made by routemail.copy
    gives the message's shared pieces as they are, not copied."""
    if isinstance(message, Prepared):
        return message.smtp_pieces()
    return [smtp_data(message)]


def writes(pieces: Sequence[Piece], at_least: int = WRITE_BYTES) -> list[Piece]:
    """pieces regrouped for writing: runs of small ones joined into one write of at
    least `at_least` bytes (or what is left), big ones as they are."""
    out: list[Piece] = []
    run: list[Piece] = []
    held = 0
    for piece in pieces:
        if len(piece) >= at_least:
            if run:
                out.append(b"".join(run))
                run, held = [], 0
            out.append(piece)
            continue
        run.append(piece)
        held += len(piece)
        if held >= at_least:
            out.append(b"".join(run))
            run, held = [], 0
    if run:
        out.append(b"".join(run))
    return out


def dot_stuffed(data: bytes) -> bytes:
    """data (CRLF line breaks) with a "." added before every line that starts with one."""
    data = data.replace(b"\n.", b"\n..")
    return DOT + data if data[:1] == DOT else data


def unstuffed(data: bytes) -> bytes:
    """The reverse of dot_stuffed(): what a server stores of what it received."""
    data = data.replace(b"\n..", b"\n.")
    return data[1:] if data[:2] == b".." else data


def _closed(data: bytes) -> bytes:
    return data + (END_OF_DATA if data.endswith(CRLF) else CRLF + END_OF_DATA)


class Prepared(bytes):
    """A message (these bytes, as the outbox and SES take it) that also gives its SMTP
    DATA form without a pass over the whole of it: `data` builds it from pieces put in
    that form once per message."""

    _data: Callable[[], list[Piece] | None]
    _ascii: Callable[[], bool] | None

    def __new__(
        cls,
        message: bytes,
        data: Callable[[], list[Piece] | None],
        ascii: Callable[[], bool] | None = None,
    ) -> Prepared:
        self = super().__new__(cls, message)
        self._data = data
        self._ascii = ascii
        return self

    def isascii(self) -> bool:
        """As bytes.isascii(), answered from the message's pieces when they were made
        with the answer (each copy's own pieces are small; the shared ones were looked
        at once), not from a pass over the whole copy."""
        return self._ascii() if self._ascii is not None else super().isascii()

    def smtp_pieces(self) -> list[Piece]:
        pieces = self._data()
        # None: a piece broke the assumptions of the splice (see WireParts.pieces_for).
        if pieces is None:
            return [_closed(dot_stuffed(wire_form(bytes(self))))]
        return pieces

    def smtp_data(self) -> bytes:
        return b"".join(self.smtp_pieces())

    def __reduce__(self) -> tuple[type[bytes], tuple[bytes]]:
        # Crossing a process boundary, it is the message it holds.
        return bytes, (bytes(self),)


class WireParts:
    """A message's pieces in SMTP DATA form, the shared ones converted once.

    A slot (None) is filled for each copy with a small piece converted as it comes.
    A "." at the start of a piece is stuffed only when the piece starts a line, which
    depends on the piece before it: that is decided as the copy is joined."""

    def __init__(self, pieces: Sequence[bytes | memoryview | None]) -> None:
        converted = [None if p is None else _prepared(p) for p in pieces]
        # A shared piece ending in a bare CR may be half of a CR LF split across
        # pieces: joining such a message piecewise could double that line break.
        self.usable = not any(p is not None and p[1] for p in converted)
        self.pieces: list[bytes | memoryview | None] = [
            None if p is None else p[0] for p in converted
        ]
        # Converting changes line breaks, dots and NUL only: ASCII stays ASCII.
        self.ascii = all(bytes(p).isascii() for p in self.pieces if p is not None)

    def join(self, filled: Sequence[bytes]) -> bytes | None:
        """What follows 354 (see smtp_data) with the slots filled in order, or None when
        this message cannot be joined piecewise (a piece ending in a bare CR)."""
        pieces = self.pieces_for(filled)
        return None if pieces is None else b"".join(pieces)

    def pieces_for(self, filled: Sequence[bytes]) -> list[Piece] | None:
        """join() as the pieces to write in order, the shared ones not copied."""
        if not self.usable:
            return None
        out: list[Piece] = []
        at_line_start = True
        slots = iter(filled)
        for piece in self.pieces:
            if piece is None:
                piece, cr = _converted(next(slots))
                if cr:
                    return None
            if not piece:
                continue
            if at_line_start and piece[0] == _DOT:
                out.append(DOT)
            out.append(piece)
            at_line_start = piece[-1] == _LF
        if not (out and at_line_start):
            out.append(CRLF)
        out.append(END_OF_DATA)
        return out


def _prepared(piece: bytes | memoryview) -> tuple[bytes | memoryview, bool]:
    """A shared piece in DATA form: as it is (a view into the message, not a copy)
    when it already is, as mail received with CRLF line breaks mostly is."""
    if _NEEDS_WORK.search(piece) is None:
        return piece, False
    return _converted(bytes(piece))


def _converted(piece: bytes) -> tuple[bytes, bool]:
    """piece in wire form with its inner line-starting dots stuffed, and whether it
    ended in a bare CR (NUL bytes aside)."""
    cleaned = piece.replace(NUL, b"") if NUL in piece else piece
    bare_cr = cleaned.endswith(b"\r")
    return line_breaks(cleaned, CRLF).replace(b"\n.", b"\n.."), bare_cr
