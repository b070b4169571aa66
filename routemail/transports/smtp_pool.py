"""SMTP delivery driven from the router's own thread: several connections, no sender threads.

With a thread per connection, every copy crossed between threads twice (handed
over, its outcome back), and each crossing waited for the interpreter lock that
the thread building the copies held; at thousands of copies a second that cost
more than building them. Here the thread that builds the copies also sends them:
every connection's socket is non-blocking, submit() writes what it can at once,
and the caller, while it waits for outcomes, calls drive(), which waits on all
connections in one selector and answers whichever replied.

What a run expects of its senders holds here as well (routemail.transports.parallel):
one token bucket for `rate`, retries with backoff, one circuit breaker for the relay
(routemail.transports.smtp_attempts), and a connection that fails hands its copies on.
With PIPELINING, MAIL, RCPT and DATA go in one write, and the next queued copy's
commands follow the content of the copy before it (RFC 2920 3.1 lets content open
a group), so a copy costs one round trip. Setting a connection up (greeting, EHLO,
STARTTLS, login) is done the plain, blocking way, once per connection.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import smtplib
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from routemail.transports import SENT, TEMPORARY, Result, TransportError
from routemail.transports.pacing import Clock
from routemail.transports.smtp import (
    START_INPUT,
    Data,
    SmtpConnector,
    commands,
    drops_connection,
    refusal,
)
from routemail.transports.smtp_attempts import STOPPED, Attempts
from routemail.transports.smtp_connection import (
    DATA,
    DISCARD,
    END,
    MAIL,
    RCPT,
    RSET,
    Connection,
    Copy,
    Piece,
)
from routemail.transports.wire import END_OF_DATA

if TYPE_CHECKING:
    from routemail.config import Smtp

UNANSWERED = Result(TEMPORARY, "the run stopped before the server answered")

# Copies handed over and not yet recorded, per connection: the one whose content is
# going out, the one announced after it, and six queued. A connection announces its
# next copy only if one is queued when its 354 comes; with two queued per connection
# the queue ran dry while the caller recorded outcomes, and a run cost 13-14 % more
# CPU a copy (bench/RESULTS.md). The price: after a kill, up to this many copies per
# connection may be sent again.
IN_FLIGHT_PER_CONNECTION = 8


class SmtpPool:
    """Up to `connections` SMTP connections sending copies paced at `rate`, driven by
    the caller: submit() hands a copy over and returns a Future; drive() waits for
    and handles the next replies. The caller must call drive() (or send(), which
    does) until its Futures are done."""

    def __init__(
        self,
        settings: Smtp,
        rate: float | None,
        *,
        ca_file: str | None = None,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.connector = SmtpConnector(settings, ca_file=ca_file)  # raises TransportError
        self.settings = settings
        self.rate = rate
        self.most = settings.connections
        self._attempts = Attempts(
            rate, retries=retries, backoff=backoff, max_backoff=max_backoff, clock=clock, rng=rng
        )
        self._clock = clock
        self._connections: list[Connection] = []
        self._selector = selectors.DefaultSelector()

    # -- for the caller ----------------------------------------------------------

    @property
    def senders(self) -> int:
        return self.most

    @property
    def in_flight(self) -> int:
        """How many copies a caller should have handed over and not yet recorded."""
        return IN_FLIGHT_PER_CONNECTION * self.most

    @property
    def circuit_open(self) -> bool:
        return self._attempts.breaker.is_open

    def submit(
        self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]
    ) -> Future[Result]:
        """Queue one copy and start it if a connection is free; its Future gives the
        Result once drive() has settled it."""
        if self._attempts.closing:
            raise RuntimeError("submit after close")
        copy = Copy(sender, recipient, message, tags)
        self._attempts.queue.append(copy)
        self.drive(0.0)
        return copy.future

    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        future = self.submit(sender, recipient, message, tags)
        while not future.done():
            self.drive()
        return future.result()

    def drive(self, timeout: float | None = None) -> None:
        """Start what can be started, wait up to timeout (by default until something is
        due: a reply, a token, a retry) and handle the replies that came."""
        token = self._dispatch()
        wait = 0.0 if timeout == 0 else self._soonest(token)
        if timeout is not None:
            wait = timeout if wait is None else min(wait, timeout)
        if wait is None:
            return
        for key, events in self._selector.select(wait):
            connection: Connection = key.data
            if events & selectors.EVENT_WRITE:
                self._write(connection, ())
            if events & selectors.EVENT_READ and connection in self._connections:
                self._read(connection)
        now = self._clock()
        for connection in self._connections:
            if connection.deadline is not None and now >= connection.deadline:
                self._broken(connection, TimeoutError(f"no answer in {self.settings.timeout:g} s"))
                break  # the list changed; the others are looked at next time
        self._dispatch()

    def close(self) -> None:
        """Say QUIT on idle connections, hang up on the others; copies not settled yet
        are temporary failures (not attempted, or not answered)."""
        self._attempts.closing = True
        for connection in list(self._connections):
            if connection.idle:
                with contextlib.suppress(OSError):
                    connection.sock.send(b"QUIT\r\n")
            for copy in self._drop(connection):
                # One whose content went out may have arrived: a later run sends it again.
                self._attempts.stopped(copy, UNANSWERED if copy.content_sent else STOPPED)
        self._attempts.close()
        self._selector.close()

    # -- starting copies ---------------------------------------------------------

    def _dispatch(self) -> float | None:
        """Start queued copies on free connections while tokens allow; the seconds until
        the next token when one is what they wait for."""
        attempts = self._attempts
        attempts.due()
        while attempts.queue and not attempts.closing:
            connection = self._idle_connection()
            if connection is None and not attempts.may_open(len(self._connections), self.most):
                return None
            if attempts.bucket and (token := attempts.bucket.wait_time()) > 0:
                return token
            copy = attempts.queue.popleft()
            if not attempts.admit(copy):
                continue
            if attempts.bucket:
                attempts.bucket.take_at_once()
            if connection is None and (connection := self._open(copy)) is None:
                continue
            self._start(connection, copy)
        return None

    def _soonest(self, token: float | None) -> float | None:
        """Seconds until something is due: a reply's deadline, a retry, a token, a
        rested connection that may open again for a waiting copy; None if nothing is."""
        now = self._clock()
        times = [c.deadline - now for c in self._connections if c.deadline is not None]
        times += self._attempts.waits(len(self._connections), self.most)
        if token is not None:
            times.append(token)
        return max(0.0, min(times)) if times else None

    def _idle_connection(self) -> Connection | None:
        for connection in self._connections:
            if connection.idle:
                return connection
        return None

    def _open(self, copy: Copy) -> Connection | None:
        try:
            session = self.connector.connect()
        except (TransportError, smtplib.SMTPException, OSError) as exc:
            self._attempts.outcome(copy, self.connector.failure(exc), failed=True)
            return None
        connection = Connection(session)
        self._connections.append(connection)
        self._selector.register(connection.sock, selectors.EVENT_READ, connection)
        return connection

    def _start(self, connection: Connection, copy: Copy) -> None:
        """MAIL, RCPT and DATA of copy on connection: in one write with PIPELINING, else
        MAIL alone (the others follow its reply)."""
        if not self._prepare(connection, copy):
            return
        connection.copies.append(copy)
        if connection.pipelining:
            connection.expected.extend(((copy, MAIL), (copy, RCPT), (copy, DATA)))
            self._write(connection, [b"".join(copy.commands)])
        else:
            connection.expected.append((copy, MAIL))
            self._write(connection, [copy.commands[0]])

    def _prepare(self, connection: Connection, copy: Copy) -> bool:
        """Make copy's commands for this connection; False when it cannot go over it
        (settled then: a permanent refusal naming why)."""
        copy.data = copy.data or Data(copy.message)
        copy.refused, copy.content_sent = None, False
        options = self.connector.options(connection.session, copy.sender, copy.recipient, copy.data)
        if isinstance(options, Result):
            self._attempts.outcome(copy, options)
            return False
        copy.commands = commands(copy.sender, copy.recipient, options).splitlines(keepends=True)
        return True

    # -- replies ---------------------------------------------------------------------

    def _read(self, connection: Connection) -> None:
        try:
            replies = connection.replies()
        except OSError as exc:
            self._broken(connection, exc)
            return
        for code, text in replies:
            copy, stage = connection.expected.popleft()
            more = connection.expected
            connection.deadline = self._clock() + self.settings.timeout if more else None
            self._reply(connection, copy, stage, code, text)
            if connection not in self._connections:
                return
        if connection.garbled is not None:
            self._broken(connection, connection.garbled)

    def _reply(
        self, connection: Connection, copy: Copy | None, stage: str, code: int, text: bytes
    ) -> None:
        if copy is None:  # RSET, or the end of an empty DATA
            if stage == RSET and code != 250:
                self._hand_back_all(connection)
            return
        if stage in (MAIL, RCPT):
            if copy.refused is None and code not in ((250,) if stage == MAIL else (250, 251)):
                copy.refused = (code, text, stage)
            if not connection.pipelining:
                if copy.refused is not None:
                    self._refused(connection, copy, *copy.refused)
                else:
                    after = DATA if stage == RCPT else RCPT
                    connection.expected.append((copy, after))
                    self._write(connection, [copy.commands[2 if after == DATA else 1]])
            return
        if stage == DATA:
            if copy.refused is not None:
                if code == START_INPUT:  # content wanted though the transaction failed
                    connection.expected.append((None, DISCARD))
                    self._write(connection, [END_OF_DATA])
                self._refused(connection, copy, *copy.refused)
            elif code != START_INPUT:
                self._refused(connection, copy, code, text, DATA)
            else:
                self._content(connection, copy)
            return
        # The end of data ends the transaction whatever the answer (RFC 5321 4.1.1.4): no
        # RSET after a refusal, which would also undo the one announced after it.
        if code != 250:
            self._refused(connection, copy, code, text, END, reset=False)
            return
        connection.copies.remove(copy)
        connection.used = True
        self._attempts.outcome(copy, Result(SENT, text.decode("utf-8", "replace")))

    def _content(self, connection: Connection, copy: Copy) -> None:
        """After 354: the copy's content, and the commands of the next queued copy
        when there is one to announce."""
        assert copy.data is not None
        pieces = list(copy.data.pieces)
        copy.content_sent = True
        connection.expected.append((copy, END))
        following = self._following(connection)
        if following is not None and self._prepare(connection, following):
            connection.copies.append(following)
            connection.expected.extend(((following, MAIL), (following, RCPT), (following, DATA)))
            pieces.extend(following.commands)
        self._write(connection, pieces)

    def _following(self, connection: Connection) -> Copy | None:
        """The next queued copy, when it may be announced now: PIPELINING, its token at
        hand, the breaker closed."""
        attempts = self._attempts
        if not (connection.pipelining and attempts.queue) or attempts.closing:
            return None
        if attempts.breaker.is_open:  # no probe goes out announced
            return None
        if attempts.bucket and not attempts.bucket.take_at_once():
            return None
        following = attempts.queue.popleft()
        attempts.admit(following)  # the breaker is closed: admitted, with its tries
        return following

    def _refused(
        self,
        connection: Connection,
        copy: Copy,
        code: int,
        text: bytes,
        stage: str,
        reset: bool = True,
    ) -> None:
        connection.copies.remove(copy)
        result = refusal(code, text, stage)
        # A connection refused for something that concerns the server (a 421, our
        # login) is dropped and rests, as after any failure of the connection.
        if drops_connection(code) or result.halt:
            self._hand_back_all(connection)
        elif reset:
            connection.expected.append((None, RSET))
            self._write(connection, [b"RSET\r\n"])
        self._attempts.outcome(copy, result, failed=result.halt)

    # -- writing -----------------------------------------------------------------

    def _write(self, connection: Connection, pieces: Sequence[Piece]) -> None:
        """Write pieces (or what waits) to connection, and wait for a reply."""
        connection.deadline = self._clock() + self.settings.timeout
        try:
            connection.write(pieces)
        except OSError as exc:
            self._broken(connection, exc)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if connection.writing else 0)
        if self._selector.get_key(connection.sock).events != events:
            self._selector.modify(connection.sock, events, connection)

    # -- failures ----------------------------------------------------------------

    def _broken(self, connection: Connection, exc: OSError) -> None:
        """The connection failed: its copy in transaction is a temporary failure (it may
        have arrived), the one announced after it goes back untried. A connection that
        sent copies before and closed before answering the next MAIL was stale (servers
        close idle ones): nothing of that copy was sent, so it is tried again at once."""
        copies = self._drop(connection)
        if not copies:
            return
        first, others = copies[0], copies[1:]
        stale = connection.used and not first.content_sent and first.refused is None
        if first.refused is not None:
            # Refused before the server hung up (a 421 at RCPT, the connection closed
            # before DATA was answered): the refusal is the copy's outcome.
            self._attempts.outcome(first, refusal(*first.refused), failed=True)
        elif stale:
            self._attempts.hand_back(first)
        else:
            detail = f"smtp: {self.connector.where}: {type(exc).__name__}: {exc}"
            self._attempts.outcome(first, Result(TEMPORARY, detail, halt=True), failed=True)
        for other in others:
            self._attempts.hand_back(other)

    def _drop(self, connection: Connection) -> list[Copy]:
        """Close connection; the copies it held, not yet settled."""
        if connection in self._connections:
            self._connections.remove(connection)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(connection.sock)
        return connection.close()

    def _hand_back_all(self, connection: Connection) -> None:
        for copy in self._drop(connection):
            self._attempts.hand_back(copy)
