"""Transactional mail from the list API: account verification, confirmations, posts.

Small plain-text messages from the site's own domain (so SES accepts the
sender), marked Auto-Submitted so vacation responders stay quiet.
"""

from __future__ import annotations

from routemail import compose
from routemail.config import Config
from routemail.spool import Spool
from routemail.transports import NULL_SENDER, PERMANENT, Result, open_transport

SENDER_LOCAL = "no-reply"


def sender(config: Config) -> str:
    return f"{SENDER_LOCAL}@{config.site.domain}"


def build(config: Config, to: str, subject: str, text: str) -> bytes:
    """A text/plain message from the site to one address."""
    site = config.site
    fields = [
        compose.addresses("From", [(site.name, sender(config))]),
        compose.addresses("To", [("", to)]),
        compose.addresses("Reply-To", [("", site.admin)]),
        compose.subject(subject),
        *compose.standard(site.domain),
        compose.made("Auto-Submitted", "auto-generated"),
    ]
    return compose.message(fields, text)


def send(config: Config, spool: Spool, to: str, subject: str, text: str, tag: str) -> Result:
    """Build and hand one message to the configured transport, unless the address
    is suppressed: nothing goes to a suppressed address by any path."""
    from routemail.state import State
    from routemail.suppression import Suppression

    with State.open(spool.root.parent) as state:
        reason = Suppression(state, config.bounces).reason(to)
    if reason is not None:
        return Result(PERMANENT, f"suppressed: {reason}")
    transport = open_transport(config, spool)
    try:
        return transport.send(NULL_SENDER, to, build(config, to, subject, text), {"kind": tag})
    finally:
        transport.close()
