"""Mail to one of our addresses that is no list: a person's is forwarded to the
admin, once (X); a machine's (a bounce of a notice, an out-of-office answer to
one) is dropped, once (K), so no two machines mail each other round after round.
"""

from __future__ import annotations

from typing import Protocol

from routemail import moderate, sidecar, tally, webhooks
from routemail.actionlog import ActionLog
from routemail.commandline import routemail_command
from routemail.config import Config
from routemail.delivery import Deliverer, Work
from routemail.notices import Notice
from routemail.transports import NULL_SENDER, PERMANENT

ADMIN = "-"  # the pseudo-list of mail forwarded to the admin, in tags and counts


class Router(Protocol):
    """What handling unknown mail needs of routemail.route.Router."""

    config: Config
    log: ActionLog
    tally: tally.Tally
    delivery: Deliverer
    webhooks: webhooks.Outbox


def drop_automatic(router: Router, work: Work, destination: str) -> None:
    """A report or auto-reply: logged once, never forwarded."""
    if work.history.has(sidecar.SKIPPED, destination):
        return
    why = f"{work.headers.machine_made} to an address that is no list: dropped"
    router.delivery.record(work, sidecar.SKIPPED, destination, why)
    router.tally.message(work.msg_id, tally.DISCARDED)
    router.log.write(work.msg_id, f"{destination}: {why}")


def forward(router: Router, work: Work, destination: str) -> None:
    """The message, attached as it arrived (only its headers when SES found a virus),
    to the admin; retried while the admin's copy fails for a temporary reason."""
    site = router.config.site
    result = router.delivery.send(
        work, NULL_SENDER, site.admin, _forward_notice(router.config, work, destination), ADMIN
    )
    if result.sent:
        router.delivery.record(work, sidecar.UNKNOWN, destination)
        router.webhooks.message(
            "forwarded", work.msg_id, work.headers, destination=destination, to=site.admin
        )
        router.tally.message(work.msg_id, tally.FORWARDED, ADMIN)
        router.log.write(
            work.msg_id, f"unknown destination {destination}: forwarded to {site.admin}"
        )
    else:
        what = f"forward of mail for {destination}"
        router.delivery.notice_failed(work, site.admin, ADMIN, what, result)
        router.log.write(
            work.msg_id, f"unknown destination {destination}: forward failed ({result.detail})"
        )
        work.retry = result.outcome != PERMANENT


def _forward_notice(config: Config, work: Work, destination: str) -> bytes:
    site = config.site
    text = "\n".join(
        [
            f"A message for {destination} matched no list on {site.domain}.",
            "",
            f"From:    {moderate.shown(work.headers.author)}",
            f"To:      {destination}",
            f"Subject: {work.headers.subject or '(none)'}",
            f"Queue:   {work.msg_id} ({routemail_command('show', work.msg_id)})",
            "",
            "Only its headers are attached: SES found a virus in it."
            if work.virus
            else "The message is attached as it arrived.",
        ]
    )
    return Notice(
        from_addr=f"routemail@{site.domain}",
        from_name=f"routemail at {site.domain}",
        to=[site.admin],
        subject=f"Unknown destination {destination}: {work.headers.subject or '(no subject)'}",
        text=text,
        original=work.raw,
        headers_only=work.virus,
        domain=site.domain,
    ).as_bytes()
