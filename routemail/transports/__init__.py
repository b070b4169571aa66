"""Transports: how a finished copy leaves routemail (outbox, smtp, ses).

Every transport answers each send with a Result; normal outcomes, failures
included, are values, never exceptions. The router turns them into sidecar
lines: SENT → S, TEMPORARY → F (retried by a later run), PERMANENT → G.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from routemail.errors import RoutemailError

if TYPE_CHECKING:
    from routemail.config import Config
    from routemail.spool import Spool
    from routemail.transports.parallel import Paced
    from routemail.transports.smtp_pool import SmtpPool

# The envelope sender of notices (MAIL FROM:<>): nothing answers them, so a notice
# that bounces cannot come back as new mail (RFC 5321 4.5.5, RFC 3834).
NULL_SENDER = ""
SENT = "sent"
TEMPORARY = "temporary"
PERMANENT = "permanent"

# A rate "auto" falls back to this when the SES quota cannot be read: the
# sandbox rate, which every SES account allows.
FALLBACK_SES_RATE = 1.0
# `[delivery.ses] concurrency = "auto"` grows up to this many calls in flight.
AUTO_SES_CALLS = 16


class TransportError(RoutemailError):
    """A transport cannot be opened as configured (a missing password, a bad CA file)."""


@dataclass(frozen=True)
class Result:
    """What became of one copy.

    retry_after: seconds the next hop asked us to wait before trying again.
    throttled: refused for our sending rate, not for this copy.
    halt: the next hop takes no mail at all for now (unreachable, paused,
    refusing our login); pacing stops trying for a while.
    """

    outcome: str  # SENT | TEMPORARY | PERMANENT
    detail: str = ""
    retry_after: float | None = None
    throttled: bool = False
    halt: bool = False

    @property
    def sent(self) -> bool:
        return self.outcome == SENT


@dataclass(eq=False)
class Handed:
    """A copy handed to a transport's senders: what to send, the Future its outcome
    settles, and the tries made so far this run."""

    sender: str
    recipient: str
    message: bytes
    tags: Mapping[str, str]
    future: Future[Result] = field(default_factory=Future)
    tries: int = 0


class Transport(Protocol):
    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        """Hand one copy to the next hop; tags name the list and message id."""
        ...

    def close(self) -> None: ...


class Unavailable:
    """Stands in for a transport that could not be opened (a password not in the
    environment, an unreadable CA file): every copy is a temporary failure
    naming why, so each gets its F line and stays queued, as with a dead server."""

    circuit_open = True

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        return Result(TEMPORARY, self.reason, halt=True)

    def close(self) -> None:
        pass


def open_transport(config: Config, spool: Spool) -> Paced | SmtpPool:
    """The configured transport, paced at delivery.rate with in-run retries, sending
    through as many sessions at once as delivery.smtp or delivery.ses allow."""
    from routemail.transports.outbox import Outbox
    from routemail.transports.parallel import Paced

    delivery = config.delivery
    inner: Transport
    another: Callable[[], Transport] | None = None
    senders, adaptive = 1, False
    rate: float | None = None if delivery.rate == "auto" else float(delivery.rate)
    if delivery.transport == "smtp":
        from routemail.transports.smtp_pool import SmtpPool

        smtp = delivery.smtp
        return SmtpPool(
            smtp,
            rate,
            ca_file=str(config.resolve_path(smtp.ca_file)) if smtp.ca_file else None,
            retries=delivery.retries,
            backoff=delivery.backoff_seconds,
            max_backoff=delivery.max_backoff_seconds,
        )
    if delivery.transport == "ses":
        from routemail.transports.ses import SesTransport

        ses = SesTransport(delivery.ses)
        if rate is None:
            rate = ses.max_send_rate() or FALLBACK_SES_RATE
        inner = ses
        another = functools.partial(SesTransport, delivery.ses, ses.session)
        adaptive = delivery.ses.concurrency == "auto"
        senders = AUTO_SES_CALLS if adaptive else int(delivery.ses.concurrency)
    else:
        inner = Outbox(spool.root / "outbox")
    return Paced(
        inner,
        rate,
        another=another,
        senders=senders,
        adaptive=adaptive,
        retries=delivery.retries,
        backoff=delivery.backoff_seconds,
        max_backoff=delivery.max_backoff_seconds,
    )
