"""One non-blocking SMTP connection: what was written to it, and the replies it owes.

The conversation's decisions (which copy next, what a reply means for it) are the
pool's (routemail.transports.smtp_pool); here are the bytes: writes that the socket
takes as it can, and replies read as they come, each matched to the command it
answers, in order (RFC 2920: replies come in the order of the commands).
"""

from __future__ import annotations

import itertools
import logging
import smtplib
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from routemail.transports import Handed
from routemail.transports.smtp import Data
from routemail.transports.wire import writes

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024
IOV_MOST = 512  # pieces given to one sendmsg() (the system allows 1024)
# A reply longer than this is not an SMTP server talking (RFC 5321 4.5.3.1.5 allows
# 512 bytes a line).
MOST_REPLY_BYTES = 64 * 1024

# What a reply answers: a copy's commands and content, or RSET and the end of a DATA
# sent empty (no copy).
MAIL, RCPT, DATA, END, RSET, DISCARD = "MAIL FROM", "RCPT TO", "DATA", "end of data", "RSET", ""

Piece = bytes | memoryview


@dataclass(eq=False)
class Copy(Handed):
    """One copy on its way over SMTP, and what its current try has come to."""

    limit: int = 1  # tries this attempt may take: 1 for a probe of an open breaker
    due: float = 0.0  # not tried again before (monotonic seconds)
    data: Data | None = None
    commands: list[bytes] = field(default_factory=list)  # its MAIL, RCPT and DATA lines
    refused: tuple[int, bytes, str] | None = None
    content_sent: bool = False


class GarbledReply(ConnectionError):
    """The server said something that is not an SMTP reply, or nothing was asked."""

    def __init__(self, what: str, replies: list[tuple[int, bytes]] | None = None) -> None:
        super().__init__(what)
        self.replies = replies or []  # the good ones before it


class Connection:
    """A connection set up by smtplib (greeting, TLS, login), now written and read
    without blocking."""

    def __init__(self, session: smtplib.SMTP) -> None:
        self.session = session
        sock = session.sock
        assert sock is not None
        sock.setblocking(False)
        self.sock: socket.socket = sock
        self.pipelining = session.has_extn("pipelining")
        # Copies on this connection: the one in its transaction, then any announced.
        self.copies: list[Copy] = []
        # The replies still to come, in order: the copy each concerns and the stage.
        self.expected: deque[tuple[Copy | None, str]] = deque()
        self.deadline: float | None = None  # for the next reply
        self.used = False  # a copy went through: closing before MAIL is then stale
        self.garbled: GarbledReply | None = None  # what ended the replies (see replies())
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._pending: deque[memoryview] = deque()
        self._received = bytearray()
        self._lines: list[bytes] = []  # of a multi-line reply
        self._reply_bytes = 0  # of the reply read so far, its lines together

    @property
    def idle(self) -> bool:
        return not self.copies and not self.expected

    @property
    def writing(self) -> bool:
        """Whether bytes wait for the socket to take them."""
        return bool(self._pending)

    def write(self, pieces: Sequence[Piece]) -> None:
        """Queue pieces and write what the socket takes now (none: what waits, once the
        socket has room); OSError if it is broken."""
        full = bool(self._pending)  # the socket took no more last time
        if self._tls:
            pieces = writes(pieces)  # a TLS record each: not one per small piece
        self._pending.extend(memoryview(piece) for piece in pieces)
        if not (full and pieces):
            self.flush()

    def flush(self) -> None:
        pending = self._pending
        try:
            while pending:
                if self._tls:
                    sent = self.sock.send(pending[0])
                else:  # the pieces as they are, in one call, none joined or copied
                    sent = self.sock.sendmsg(itertools.islice(pending, IOV_MOST))
                if not self._advance(sent):
                    return
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return

    def _advance(self, sent: int) -> bool:
        """Drop what the socket took; whether it took all it was given (room for more)."""
        pending = self._pending
        while pending and sent >= len(pending[0]):
            sent -= len(pending.popleft())
        if pending and sent:
            pending[0] = pending[0][sent:]
            return False
        return True

    def replies(self) -> list[tuple[int, bytes]]:
        """The replies complete so far, as (code, text with lines joined by LF); OSError
        when the connection is broken or closed. What no server says ends the replies
        and is kept in `garbled` (GarbledReply): the replies before it still count, a
        copy the server accepted is not taken for one that failed."""
        try:
            return self._read()
        except GarbledReply as exc:
            self.garbled = exc
            return exc.replies

    def _read(self) -> list[tuple[int, bytes]]:
        try:
            data = self.sock.recv(READ_BYTES)
            # TLS may hold decrypted bytes the selector knows nothing about.
            while isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                data += self.sock.recv(self.sock.pending())
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return []
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self._received += data
        out: list[tuple[int, bytes]] = []
        start = 0
        received = self._received
        while (end := received.find(b"\n", start)) >= 0:
            line = bytes(received[start:end]).rstrip(b"\r")
            start = end + 1
            code = line[:3]
            if not code.isdigit() or len(self.expected) <= len(out):
                raise GarbledReply(f"unexpected from the server: {line[:80]!r}", out)
            self._lines.append(line[4:])
            # Each line ended, or a long reply of many lines, is bounded as well as
            # the line still coming.
            self._reply_bytes += len(line)
            if self._reply_bytes > MOST_REPLY_BYTES:
                raise GarbledReply("a reply longer than any server sends", out)
            if line[3:4] != b"-":
                out.append((int(code), b"\n".join(self._lines)))
                self._lines, self._reply_bytes = [], 0
        del received[:start]
        if len(received) > MOST_REPLY_BYTES:
            raise GarbledReply("a reply line longer than any server sends", out)
        return out

    def close(self) -> list[Copy]:
        """Hang up; the copies it held, not yet settled."""
        try:
            self.session.close()
        except OSError:
            log.debug("closing an SMTP connection failed", exc_info=True)
        copies, self.copies = self.copies, []
        self.expected.clear()
        self.deadline = None
        return copies
