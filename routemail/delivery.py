"""Delivery: one copy to each recipient, each outcome a sidecar line (S, F, G or K).

The router decides what a message needs; this module hands the copies to the
transport, several at once (routemail.transports.parallel), and records what
became of each, one line at a time in the router's thread: S sent, F failed (tried again by a
later run, or not attempted while the transport is down), G given up, K skipped
(suppressed). It also chooses each copy's envelope sender.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Protocol

from routemail import feedback, sidecar, tally, webhooks
from routemail.actionlog import ActionLog
from routemail.addresses import AddressSet
from routemail.config import Config
from routemail.message import Headers
from routemail.spool import Spool
from routemail.transports import (
    PERMANENT,
    TEMPORARY,
    Result,
    Transport,
    TransportError,
    Unavailable,
    open_transport,
)
from routemail.transports.parallel import Paced
from routemail.transports.smtp_pool import SmtpPool

OUTGOING = "outgoing"  # the pseudo-list of transactional mail in L lines, tags and bounces
# F lines whose detail starts so count toward max_attempts; the others record a copy
# the transport never took ("transport down: ...") or a notice not sent.
COUNTED_FAILURE = "attempt"
TRANSPORT_DOWN = "transport down:"
ANSWER_CHARS = 200  # of the next hop's answer kept on an S line
# Copies handed to the senders and not yet recorded hold at most this many bytes
# together (besides the number the senders want), so that a big post does not
# cost the run many times its size; a copy bigger than this goes out alone.
IN_FLIGHT_BYTES = 16 * 2**20

Suppressed = Callable[[str, str], "str | None"]
# The suppression lookup for one list's fan-out: given every recipient at once,
# it answers for each in turn without a query per copy (routemail.suppression).
SuppressedAmong = Callable[[Sequence[str], str], Callable[[str], "str | None"]]


class Priority(Protocol):
    """Mail that must not wait for the end of a list's fan-out (routemail.priority)."""

    def due(self) -> bool:
        """Whether priority mail waits; cheap enough to ask before every copy."""
        ...

    def run(self) -> None:
        """Send it, in this thread, while the fan-out waits."""
        ...


@dataclass
class Work:
    """One message being processed: what is known and what is left."""

    msg_id: str
    history: sidecar.History
    raw: bytes
    headers: Headers
    # Whatever their case: one copy per address across lists, and an S line for
    # bob@example.com settles Bob@Example.com on resume.
    finished: AddressSet = field(default_factory=AddressSet)  # sent, skipped or given up
    sent: AddressSet = field(default_factory=AddressSet)
    retry: bool = False

    @property
    def virus(self) -> bool:
        return self.history.verdicts.get("virus") == "FAIL"


class InFlight:
    """The copies handed to the senders and not yet recorded: their recipients and
    sizes, and which are back (each Future reports itself to a queue when done,
    cheaper than waiting on all of them again for every copy)."""

    def __init__(self, drive: Callable[[float | None], None] | None = None) -> None:
        self._copies: dict[Future[Result], tuple[str, int]] = {}
        self._back: SimpleQueue[Future[Result]] = SimpleQueue()
        self.bytes = 0
        # A transport that sends from the caller's thread (smtp_pool) does its work
        # while the caller waits: drive() it until an outcome is back.
        self._drive = drive

    def _next(self) -> Future[Result]:
        if self._drive is not None:
            while self._back.empty():
                self._drive(None)
            return self._back.get_nowait()
        return self._back.get()

    def poll(self) -> None:
        """Let such a transport handle what came back meanwhile, without waiting: its
        connections are not left idle while the caller records outcomes."""
        if self._drive is not None:
            self._drive(0.0)

    def __len__(self) -> int:
        return len(self._copies)

    def add(self, future: Future[Result], recipient: str, size: int) -> None:
        self._copies[future] = (recipient, size)
        self.bytes += size
        future.add_done_callback(self._back.put)

    def back(self, wait_for: int) -> list[tuple[str, Future[Result]]]:
        """(recipient, Future) of the copies that are back, in the order handed over,
        waiting until wait_for of them are (or all, if fewer are in flight); they are
        then no longer in flight."""
        if not self._copies:
            return []
        wait_for = min(max(1, wait_for), len(self._copies))
        done: set[Future[Result]] = set()
        while len(done) < wait_for:
            done.add(self._next())
        while len(done) < len(self._copies):
            try:
                done.add(self._back.get_nowait())
            except Empty:
                break
        out = []
        for future in [f for f in self._copies if f in done]:
            recipient, size = self._copies.pop(future)
            self.bytes -= size
            out.append((recipient, future))
        return out


class Deliverer:
    """Sends copies through the configured transport and records their outcomes."""

    def __init__(
        self,
        config: Config,
        spool: Spool,
        log: ActionLog,
        counts: tally.Tally,
        secret: bytes,
        suppressed: Suppressed,
        transport: Transport | None = None,
        hooks: webhooks.Outbox | None = None,
        among: SuppressedAmong | None = None,
    ) -> None:
        self.config = config
        self.spool = spool
        self.log = log
        self.tally = counts
        self.secret = secret
        self.suppressed = suppressed
        self.among = among
        self.priority: Priority | None = None
        self._transport = transport
        self.hooks = hooks
        # While outcomes are being collected: their lines, written together (_batch).
        self._lines: list[sidecar.Event] | None = None
        self._sync = False
        self._after: list[Callable[[], None]] = []

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            try:
                self._transport = open_transport(self.config, self.spool)
            except TransportError as exc:
                # Every copy still gets its F line, and the operator one line saying why.
                self.tally.problem(tally.ERROR, "transport", str(exc))
                self._transport = Unavailable(f"transport not usable: {exc}")
        return self._transport

    @property
    def circuit_open(self) -> bool:
        """Whether the transport ended up taking nothing (unreachable, refusing us)."""
        return bool(getattr(self._transport, "circuit_open", False))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def record(self, work: Work, code: str, *fields: str, sync: bool = True) -> None:
        line = sidecar.event(code, *fields)
        if self._lines is not None:
            self._lines.append(line)
            self._sync = self._sync or sync
        else:
            self.spool.append(work.msg_id, [line], sync=sync)

    def emit(
        self, work: Work, event: str, recipient: str, listname: str, detail: str, **fields: object
    ) -> None:
        """A webhook event of one recipient's copy; transactional mail has no list (null).
        Written after the copy's sidecar line, as the line it mirrors."""
        if self.hooks is not None:
            hooks = self.hooks
            shown = None if listname == OUTGOING else listname

            def write() -> None:
                hooks.copy(event, work.msg_id, recipient, shown, detail, **fields)

            if self._lines is not None:
                self._after.append(write)
            else:
                write()

    @contextlib.contextmanager
    def _batch(self, work: Work) -> Iterator[None]:
        """The outcomes recorded inside go to the sidecar in one append when it ends
        (fsync'd if any of them asks for it), then their webhook events and log lines.
        Only outcomes already back are batched: no line waits for a later copy."""
        self._lines, self._sync, self._after = [], False, []
        try:
            with self.log.grouped():
                yield
        finally:
            lines, sync, after = self._lines, self._sync, self._after
            self._lines, self._after = None, []
            if lines:
                self.spool.append(work.msg_id, lines, sync=sync)
            for write in after:
                write()

    def send_each(
        self,
        work: Work,
        listname: str,
        recipients: Sequence[str],
        copy_for: Callable[[str], bytes],
    ) -> bool:
        """One copy to each recipient not yet finished; True when all are finished.

        Several copies may be in flight; each outcome is recorded here, in this
        thread, as it comes back, and all of them before this returns."""
        todo = [r for r in recipients if r not in work.finished]
        self.tally.expect(len(todo))
        in_flight = InFlight(getattr(self.transport, "drive", None))
        handed = AddressSet()
        suppressed = (self.among or self._one_by_one)(todo, listname)
        expected = 0  # bytes of the next copy
        try:
            for recipient in todo:
                if recipient in work.finished or recipient in handed:
                    continue
                if reason := suppressed(recipient):
                    self.record(work, sidecar.SKIPPED, recipient, f"suppressed: {reason}")
                    self.emit(work, "suppressed", recipient, listname, reason)
                    self.log.write(work.msg_id, f"{listname}: skipped {recipient}: {reason}")
                    work.finished.add(recipient)
                    self.tally.copy(work.msg_id, listname, tally.SUPPRESSED)
                    continue
                # Room first for a copy the size of the last one (copies of one post
                # differ by a few bytes), so that a big one is not built only to wait.
                self._make_room(work, listname, in_flight, expected)
                sender = self.envelope_sender(listname, recipient)
                copy = copy_for(recipient)
                expected = len(copy)
                self._make_room(work, listname, in_flight, expected)
                if self.priority is not None and self.priority.due():
                    self._collect(work, listname, in_flight, len(in_flight))
                    self.priority.run()
                future = self._submit(work, sender, recipient, copy, listname)
                in_flight.add(future, recipient, expected)
                handed.add(recipient)
                del copy  # the sender's now: not kept here once it is sent
        finally:
            self._collect(work, listname, in_flight, len(in_flight))
        return all(r in work.finished for r in recipients)

    def _make_room(
        self,
        work: Work,
        listname: str,
        in_flight: InFlight,
        size: int,
    ) -> None:
        """Collect outcomes until a copy of size bytes may be handed over: fewer copies
        than the senders want, and no more than IN_FLIGHT_BYTES in all (always room
        for one, however big)."""
        most = self._in_flight()
        while in_flight and (len(in_flight) >= most or in_flight.bytes + size > IN_FLIGHT_BYTES):
            # Several at once where several are out (one per sender): fewer wake-ups,
            # and their lines in one append.
            self._collect(work, listname, in_flight, self._senders())

    def _one_by_one(self, addresses: Sequence[str], listname: str) -> Callable[[str], str | None]:
        return lambda recipient: self.suppressed(recipient, listname)

    def _in_flight(self) -> int:
        transport = self.transport
        return transport.in_flight if isinstance(transport, Paced | SmtpPool) else 1

    def _senders(self) -> int:
        transport = self.transport
        return transport.senders if isinstance(transport, Paced | SmtpPool) else 1

    def _submit(
        self, work: Work, sender: str, recipient: str, copy: bytes, listname: str
    ) -> Future[Result]:
        tags = {"list": listname, "message": work.msg_id}
        transport = self.transport
        if isinstance(transport, Paced | SmtpPool):
            return transport.submit(sender, recipient, copy, tags)
        done: Future[Result] = Future()
        done.set_result(transport.send(sender, recipient, copy, tags))
        return done

    def _collect(self, work: Work, listname: str, in_flight: InFlight, wait_for: int) -> None:
        """Record the outcomes of the copies that are back, once wait_for are."""
        back = in_flight.back(wait_for)
        if not back:
            return
        with self._batch(work):
            for recipient, future in back:
                try:
                    result = future.result()
                except Exception as exc:  # a transport's bug: the copy may have gone
                    result = Result(TEMPORARY, f"{type(exc).__name__}: {exc}")
                self.outcome(work, recipient, result, listname)
        in_flight.poll()

    def envelope_sender(self, listname: str, recipient: str) -> str:
        """VERP on SMTP, where bounces come back as DSNs; SES reports them itself."""
        domain = self.config.site.domain
        if self.config.delivery.transport == "smtp" and listname != OUTGOING:
            return feedback.verp_sender(self.secret, listname, recipient, domain)
        return f"{listname}{feedback.BOUNCES_SUFFIX}@{domain}"

    def send(self, work: Work, sender: str, recipient: str, data: bytes, listname: str) -> Result:
        """One copy, unless the address is suppressed; the caller records the outcome."""
        if reason := self.suppressed(recipient, listname):
            return Result(PERMANENT, f"suppressed: {reason}")
        return self.transport.send(
            sender, recipient, data, {"list": listname, "message": work.msg_id}
        )

    def outcome(self, work: Work, recipient: str, result: Result, listname: str) -> None:
        """S, F or G for one recipient; S is not fsync'd one by one (a killed
        process loses no written line; L syncs them all)."""
        if result.sent:
            # The next hop's answer (SES's MessageId, an SMTP reply) lets what it
            # reports about the copy later find this line (routemail.tracking).
            answer = " ".join(result.detail.split())[:ANSWER_CHARS]
            self.record(work, sidecar.SENT, recipient, *((answer,) if answer else ()), sync=False)
            self.emit(work, "sent", recipient, listname, answer)
            work.sent.add(recipient)
            self.log.write(work.msg_id, f"{listname}: sent to {recipient}")
            work.finished.add(recipient)
            self.tally.copy(work.msg_id, listname, tally.SENT)
            return
        # A send the transport did not even try (its server is down) uses up no attempt.
        failures = work.history.failures(recipient)
        attempts = sum(_detail_starts(e, COUNTED_FAILURE) for e in failures)
        attempts += 0 if result.halt else 1
        received = work.history.received_at
        age_hours = (time.time() - received.timestamp()) / 3600 if received else 0.0
        delivery = self.config.delivery
        permanent = result.outcome == PERMANENT
        if permanent or attempts >= delivery.max_attempts or age_hours >= delivery.max_age_hours:
            why = (
                result.detail
                if permanent
                else f"gave up after {attempts} attempts: {result.detail}"
            )
            self.record(work, sidecar.GAVE_UP, recipient, why)
            self.emit(work, "gave_up", recipient, listname, why, attempts=attempts)
            self.log.write(work.msg_id, f"{listname}: not delivered to {recipient}: {why}")
            work.finished.add(recipient)
            self.tally.copy(work.msg_id, listname, tally.GAVE_UP, why)
            return
        work.retry = True
        self.tally.copy(work.msg_id, listname, tally.DEFERRED, result.detail)
        if result.halt:
            # One such line per recipient while the transport stays down, not one per run.
            if not (failures and _detail_starts(failures[-1], TRANSPORT_DOWN)):
                self.record(work, sidecar.FAILED, recipient, f"{TRANSPORT_DOWN} {result.detail}")
                self.emit(work, "deferred", recipient, listname, result.detail, attempts=0)
            self.log.write(work.msg_id, f"{listname}: {recipient} not attempted ({result.detail})")
            return
        self.record(work, sidecar.FAILED, recipient, f"attempt {attempts}: {result.detail}")
        self.emit(work, "deferred", recipient, listname, result.detail, attempts=attempts)
        self.log.write(work.msg_id, f"{listname}: {recipient} failed ({result.detail}); will retry")

    def notice_failed(
        self, work: Work, recipient: str, listname: str, what: str, result: Result
    ) -> None:
        """An F line for a notice (moderation request, forward) that was not sent; it
        counts toward no give-up: the notice is tried again while the message waits."""
        self.record(work, sidecar.FAILED, recipient, f"{what} not sent: {result.detail}")
        outcome = tally.GAVE_UP if result.outcome == PERMANENT else tally.DEFERRED
        self.tally.copy(work.msg_id, listname, outcome, f"{what}: {result.detail}")


def _detail_starts(failure: sidecar.Event, prefix: str) -> bool:
    """Whether an F line's detail (the words after its recipient) begins with prefix."""
    words = prefix.split()
    return list(failure.fields[1 : 1 + len(words)]) == words
