"""Routing: what happens to each destination of a message that needs processing.

The route of a message, in order (docs/routing.md states each rule):

    approve+…@, reject+…@ → a moderator's decision on a held message (routemail.approvals)
    <list>-bounces+…@ → a DSN: score the bounce of the recipient the VERP token names
    <list>-unsubscribe@ → unsubscribe the author (after the usual verdict checks)
                        (both in routemail.serviceaddresses)
    our own mail      → dropped (it carries our List-Id or loop header)
    a list address    → already sent, discarded or expired: nothing
                        rejected: its author is told why, once (T)
                        held and not approved: nothing
                        needs moderation (a verdict, no author, may not post,
                        machine-made): request to the moderators (M), and
                        the author told it waits, once (T)
                        approved or needs none: deliver, one copy per address (S…, L)
    anything else     → machine-made (a DSN, Auto-Submitted): dropped once (K)
                        otherwise forwarded to the admin once (X)
                        (both in routemail.unknownmail)
    O lines           → our own transactional mail, sent as it is (S…, L outgoing)

Notices (requests, forwards) go with the null envelope sender, so nothing
answers them. Every decision is a sidecar line and a log line. The message
keeps its needs-processing bit while anything is left to retry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from routemail import (
    approvals,
    authornotices,
    feedback,
    moderate,
    serviceaddresses,
    sidecar,
    tally,
    tokens,
    unknownmail,
    webhooks,
)
from routemail.actionlog import ActionLog
from routemail.addresses import AddressSet
from routemail.config import Config
from routemail.copy import CopyError, CopyMaker
from routemail.copyheaders import LOOP_HEADER, ListIdentity
from routemail.delivery import OUTGOING, Deliverer, Work
from routemail.errors import UnknownMessage
from routemail.lists import Directory, ResolvedList, ResolverError
from routemail.message import Headers
from routemail.priority import Interleave
from routemail.spool import Spool
from routemail.state import State
from routemail.suppression import ListSuppressions, Suppression
from routemail.transports import NULL_SENDER, Result, Transport


class Router:
    """Routes queue entries for one `routemail run`."""

    def __init__(
        self,
        config: Config,
        spool: Spool,
        log: ActionLog,
        transport: Transport | None = None,
        counts: tally.Tally | None = None,
    ) -> None:
        self.config = config
        self.spool = spool
        self.log = log
        self.tally = counts or tally.Tally()
        self.directory = Directory(config)
        self.secret = tokens.load_secret(spool.root.parent)
        self.webhooks = webhooks.Outbox(spool.root.parent, config.webhooks)
        self.delivery = Deliverer(
            config,
            spool,
            log,
            self.tally,
            self.secret,
            self.suppressed,
            transport,
            self.webhooks,
            among=self.suppressed_among,
        )
        self._state: State | None = None
        # Entries routed in this run, and whether the one being routed now is routed
        # urgently, in the middle of another's fan-out (routemail.priority).
        self.seen: set[str] = set()
        self.urgent = False
        self._announced: set[str] = set()
        self.delivery.priority = Interleave(spool, self.route_urgent, self.seen)
        self._held_now: dict[str, list[str]] = {}  # lists each message was held for just now

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = State.open(self.spool.root.parent)
        return self._state

    @property
    def feedback(self) -> feedback.Feedback:
        return feedback.Feedback(self.config, self.spool, self.state)

    def suppressed(self, address: str, listname: str = "") -> str | None:
        return Suppression(self.state, self.config.bounces).reason(address, listname)

    def suppressed_among(
        self, addresses: Sequence[str], listname: str
    ) -> Callable[[str], str | None]:
        """suppressed() for a fan-out: read for every recipient at once."""
        suppression = Suppression(self.state, self.config.bounces)
        return ListSuppressions(suppression, addresses, listname).reason

    @property
    def circuit_open(self) -> bool:
        """Whether the transport ended up taking nothing (unreachable, refusing us)."""
        return self.delivery.circuit_open

    def close(self) -> None:
        self.delivery.close()
        if self._state is not None:
            self._state.close()

    # -- one message -----------------------------------------------------

    def process(self, msg_id: str) -> str | None:
        """Route one entry; an unexpected failure is returned, logged, and the
        entry keeps its bit so a later run tries again."""
        try:
            self._process(msg_id)
        except UnknownMessage as exc:
            self.log.write(msg_id, f"skipped: {exc}")
            return str(exc)
        except Exception as exc:  # one bad message must not stop the run
            self.log.write(msg_id, f"error, will retry: {type(exc).__name__}: {exc}")
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.webhooks.flush()
        return None

    def route_urgent(self, msg_id: str) -> None:
        """Route an entry while another's fan-out waits: its transactional copies and
        notices go now, its list deliveries and approvals in its own turn."""
        self.urgent = True
        try:
            if error := self.process(msg_id):
                self.tally.problem(tally.ERROR, msg_id, error)
        finally:
            self.urgent = False

    def _process(self, msg_id: str) -> None:
        self.seen.add(msg_id)
        history = self.spool.history(msg_id)
        raw = self.spool.read_message(msg_id)
        work = Work(
            msg_id,
            history,
            raw,
            Headers.of(raw),
            AddressSet(history.finished_recipients),
            AddressSet(history.sent_to),
        )
        if {e.code for e in history.events} <= {sidecar.RECEIVED, sidecar.VERDICTS} and (
            msg_id not in self._announced
        ):
            self._announced.add(msg_id)
            self._emit(work, "received", destinations=history.destinations)
        # A discard settles its own destination only: never the message's other ones.
        for destination in history.destinations:
            if destination not in history.discarded_destinations:
                self._destination(work, destination)
        if history.outgoing and not history.has(sidecar.LIST_SENT, OUTGOING):
            self._outgoing(work)
        held_now = self._held_now.pop(msg_id, [])
        if (
            held_now
            and not history.told(authornotices.HELD)
            and authornotices.may_tell_held(history, work.headers, self.config)
        ):
            self._tell(work, authornotices.HELD, held_now)
        if not work.retry:
            self.spool.set_pending(msg_id, False)

    def _record(self, work: Work, code: str, *fields: str) -> None:
        self.delivery.record(work, code, *fields)

    def _destination(self, work: Work, destination: str) -> None:
        name = self.directory.list_name(destination)
        if name is not None and (reply := moderate.parse_moderation_address(name)):
            # Deciding means delivering or telling an author: in the reply's own turn.
            if self.urgent or not approvals.handle(
                self, work, destination, approvals.Reply(*reply)
            ):
                work.retry = True
            return
        if name is not None and (bounce := feedback.parse_bounce_address(name)):
            serviceaddresses.bounce(self, work, destination, *bounce)
            return
        if name is not None and (listname := feedback.parse_unsubscribe_address(name)):
            serviceaddresses.unsubscribe(self, work, destination, listname)
            return
        if self._is_loop(work):
            self.discard(
                work,
                destination,
                f"dropped: a loop (carries this router's List-Id or {LOOP_HEADER})",
            )
            return
        if name is not None and not work.history.has(sidecar.UNKNOWN, destination):
            try:
                mlist = self.directory.resolve(name)
            except ResolverError as exc:
                self._record(work, sidecar.DEFERRED, name, str(exc))
                self.log.write(work.msg_id, f"{name}: cannot resolve ({exc}); will retry")
                self.tally.problem(tally.UNDELIVERED, work.msg_id, f"{name}: cannot resolve: {exc}")
                work.retry = True
                return
            if mlist is not None:
                self._list(work, mlist, destination)
                return
        if work.headers.machine_made:
            unknownmail.drop_automatic(self, work, destination)
        elif not work.history.has(sidecar.UNKNOWN, destination):
            unknownmail.forward(self, work, destination)

    def _is_loop(self, work: Work) -> bool:
        domain = self.config.site.domain
        return any(i.endswith(f".{domain}>") for i in work.headers.list_ids) or any(
            v == domain for v in work.headers.loops
        )

    # -- lists -----------------------------------------------------------

    def _list(self, work: Work, mlist: ResolvedList, destination: str) -> None:
        name, h = mlist.name, work.history
        if h.has(sidecar.LIST_SENT, name):
            return
        decision = h.decision(name)
        if decision is not None and decision.code != sidecar.APPROVED:
            if decision.code == sidecar.REJECTED and name not in h.told(authornotices.REJECTED):
                why = " ".join(decision.fields[3:])
                self._tell(work, authornotices.REJECTED, [name], why)
            return
        if decision is None:
            if h.has(sidecar.MODERATION, name):
                # Held, waiting for a moderator; its author may not have been told yet
                # (a run stopped between the request and the notice).
                self._held_now.setdefault(work.msg_id, []).append(name)
                return
            reasons = moderate.verdict_reasons(h.verdicts, self.config.moderation)
            if reason := moderate.poster_reason(mlist, work.headers.author):
                reasons.append(reason)
            if machine := work.headers.machine_made:
                # An out-of-office reply to a list copy must not reach every member.
                reasons.append(f"{machine}, not a post (RFC 3834)")
            if reasons:
                self._hold(work, mlist, reasons)
                return
        self._deliver(work, mlist, destination)

    def _hold(
        self, work: Work, mlist: ResolvedList, reasons: list[str], to_admin: bool = False
    ) -> None:
        """Send the moderation request (to the admin for what only a person with a
        shell can sort out) and record M."""
        moderators = [self.config.site.admin] if to_admin else list(mlist.moderators)
        moderators = moderators or [self.config.site.admin]
        held = moderate.Held(
            work.msg_id, mlist, reasons, work.headers, work.virus, self.config.moderation.hold_days
        )
        message = moderate.request(held, work.raw, self.config.site, self.secret, moderators)
        results = [self._send(work, NULL_SENDER, m, message, mlist.name) for m in moderators]
        if not any(r.sent for r in results):
            for moderator, result in zip(moderators, results, strict=True):
                self._notice_failed(
                    work, moderator, mlist.name, f"moderation request for {mlist.name}", result
                )
            self.log.write(work.msg_id, f"{mlist.name}: moderation request not sent; will retry")
            work.retry = True
            return
        self._record(work, sidecar.MODERATION, mlist.name, "; ".join(reasons))
        self._held_now.setdefault(work.msg_id, []).append(mlist.name)
        self.tally.message(work.msg_id, tally.HELD, mlist.name)
        self._emit(work, "held", list=mlist.name, reasons=reasons)
        self.log.write(
            work.msg_id,
            f"{mlist.name}: held for moderation ({'; '.join(reasons)}); "
            f"request sent to {', '.join(moderators)}",
        )

    def _deliver(self, work: Work, mlist: ResolvedList, destination: str) -> None:
        if self.urgent:  # a fan-out waits for its own turn in the run
            work.retry = True
            return
        settings = dataclasses.replace(mlist.settings, moderators=mlist.moderators)
        try:
            maker = CopyMaker(work.raw, ListIdentity(settings, self.config.site, self.secret))
        except CopyError as exc:
            if work.history.approver(mlist.name) is not None:
                self.discard(work, destination, f"{mlist.name}: still cannot build a copy: {exc}")
            else:
                # A clear hold, not a crash or a silent drop: the admin is told why, and
                # `routemail approve` tries again (say, after an upgrade).
                self._hold(work, mlist, [f"no copy can be built: {exc}"], to_admin=True)
            return
        for problem in maker.problems:  # what the copy could not carry as it was, and why
            self.log.write(work.msg_id, f"{mlist.name}: copy: {problem}")
        if self.delivery.send_each(work, mlist.name, mlist.recipients, maker.copy_for):
            self._record(work, sidecar.LIST_SENT, mlist.name)
            sent = sum(r in work.sent for r in mlist.recipients)
            missed = len(mlist.recipients) - sent
            self.log.write(
                work.msg_id,
                f"{mlist.name}: delivered to {sent} recipients"
                + (f", {missed} not (suppressed or given up)" if missed else ""),
            )
            self._emit(work, "finished", list=mlist.name, recipients=sent, not_delivered=missed)
            if self.config.retention.archive and mlist.settings.archive:
                self.spool.archive(work.msg_id, mlist.name)
        else:
            work.retry = True

    def _emit(self, work: Work, event: str, **fields: object) -> None:
        self.webhooks.message(event, work.msg_id, work.headers, **fields)

    def _outgoing(self, work: Work) -> None:
        """Transactional mail: sent as it is, with the same pacing, retries and suppression."""
        recipients = work.history.outgoing
        if self.delivery.send_each(work, OUTGOING, recipients, lambda _: work.raw):
            self._record(work, sidecar.LIST_SENT, OUTGOING)
            self.log.write(
                work.msg_id, f"outgoing mail done: {len(work.history.outgoing)} recipients"
            )
            self._emit(work, "finished", list=None, recipients=len(work.history.outgoing))
        else:
            work.retry = True

    def _send(self, work: Work, sender: str, recipient: str, data: bytes, listname: str) -> Result:
        return self.delivery.send(work, sender, recipient, data, listname)

    def _notice_failed(
        self, work: Work, recipient: str, listname: str, what: str, result: Result
    ) -> None:
        self.delivery.notice_failed(work, recipient, listname, what, result)

    # -- moderation: replies (routemail.approvals) and authors' notices ------

    def discard(self, work: Work, destination: str, why: str) -> None:
        """Nothing more will happen for this destination (the message's other
        destinations go on): one sidecar line, one log line."""
        self._record(work, sidecar.DISCARDED, destination, why)
        self.tally.message(work.msg_id, tally.DISCARDED)
        self.log.write(work.msg_id, why)

    def send_notice(self, work: Work, to: str, data: bytes, listname: str, what: str) -> Result:
        """A notice to a moderator, sent once and never retried: a G line when it was not."""
        result = self._send(work, NULL_SENDER, to, data, listname)
        if not result.sent:
            why = f"{what} not sent: {result.detail}"
            self._record(work, sidecar.GAVE_UP, to, why)
            self.tally.copy(work.msg_id, listname, tally.GAVE_UP, why)
        return result

    def _tell(self, work: Work, event: str, lists: list[str], reason: str = "") -> None:
        config, spool = self.config, self.spool
        authornotices.tell(config, spool, work.msg_id, work.headers, event, lists, reason, self.log)
