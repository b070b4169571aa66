"""Transactional mail from the list API: account verification, confirmations, posts.

Small plain-text messages from the site's own domain (so SES accepts the
sender), marked Auto-Submitted so vacation responders stay quiet.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage

from routemail.config import Config
from routemail.spool import Spool
from routemail.transports import PERMANENT, Result, open_transport

SENDER_LOCAL = "no-reply"
# SMTP policy: CRLF line ends and a header refolding that never lets a value
# smuggle in a header of its own.
POLICY = email.policy.SMTP.clone(max_line_length=78)


def sender(config: Config) -> str:
    return f"{SENDER_LOCAL}@{config.site.domain}"


def build(config: Config, to: str, subject: str, text: str) -> bytes:
    """A text/plain message from the site to one address."""
    site = config.site
    msg = EmailMessage(policy=POLICY)
    msg["From"] = email.utils.formataddr((site.name, sender(config)))
    msg["To"] = to
    msg["Reply-To"] = site.admin
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=site.domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, charset="utf-8")
    return msg.as_bytes()


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
        return transport.send(sender(config), to, build(config, to, subject, text), {"kind": tag})
    finally:
        transport.close()
