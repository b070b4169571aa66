"""Transports: how a finished copy leaves routemail (outbox, smtp, ses).

Every transport answers each send with a Result; normal outcomes, failures
included, are values, never exceptions. The router turns them into sidecar
lines: SENT → S, TEMPORARY → F (retried by a later run), PERMANENT → G.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from routemail.config import Config
    from routemail.spool import Spool

SENT = "sent"
TEMPORARY = "temporary"
PERMANENT = "permanent"


@dataclass(frozen=True)
class Result:
    outcome: str  # SENT | TEMPORARY | PERMANENT
    detail: str = ""

    @property
    def sent(self) -> bool:
        return self.outcome == SENT


class Transport(Protocol):
    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        """Hand one copy to the next hop; tags name the list and message id."""
        ...

    def close(self) -> None: ...


def open_transport(config: Config, spool: Spool) -> Transport:
    """The configured transport, paced at delivery.rate."""
    from routemail.transports.outbox import Outbox

    transport: Transport
    name = config.delivery.transport
    if name == "smtp":
        from routemail.transports.smtp import SmtpTransport

        transport = SmtpTransport(config.delivery.smtp)
    elif name == "ses":
        from routemail.transports.ses import SesTransport

        transport = SesTransport(config.delivery.ses)
    else:
        transport = Outbox(spool.root / "outbox")
    return transport
