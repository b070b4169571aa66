"""Confirmation mails: the mailed token links and their per-address, per-client limits."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlencode

from mailrecv.api.context import ApiError, Context
from routemail import addresses, notify

log = logging.getLogger(__name__)


def claim(ctx: Context, to: str, tag: str) -> str:
    """Count one request for a mail of kind tag to `to`, or answer 429: at most one per
    mail_interval_seconds per (address, kind), a limited number per client. The key to
    give deliver. Counted whether or not a mail will go, so the answer tells nothing."""
    window = ctx.api.window_seconds
    if ctx.limits.count(f"mail-client:{ctx.client}", window) >= ctx.api.mails_per_client:
        raise ApiError(
            429, "this client asked for too many confirmation mails; retry later", window
        )
    key = f"{tag}:{addresses.key(to)}"  # Bob@x and bob@x share one allowance
    wait = ctx.limits.claim_mail(key, ctx.api.mail_interval_seconds)
    if wait:
        raise _too_soon(to, wait)
    ctx.limits.bump(f"mail-client:{ctx.client}", window)
    return key


def deliver(ctx: Context, key: str, to: str, subject: str, text: str, quiet: bool = False) -> None:
    """Send a mail claimed under key. A suppressed address answers 409, or, when quiet
    (the answer must not tell whether a mail was due), nothing."""
    tag = key.partition(":")[0]
    result = notify.send(ctx.config, ctx.settings.spool, to, subject, text, tag)
    if result.detail.startswith("suppressed"):
        if quiet:
            log.info("no %s mail to %s: it is %s", tag, to, result.detail)
            return
        ctx.limits.release_mail(key)
        raise ApiError(409, f"no mail goes to {to}: it is {result.detail}")
    if not result.sent:
        ctx.limits.release_mail(key)
        log.error("cannot send %s mail to %s: %s", tag, to, result.detail)
        raise ApiError(503, f"the mail to {to} could not be sent; retry later")


def send_mail(ctx: Context, to: str, subject: str, text: str, tag: str) -> None:
    """Claim and send a mail of kind tag to `to`."""
    deliver(ctx, claim(ctx, to, tag), to, subject, text)


def link(ctx: Context, path: str, **query: str) -> str:
    return f"{ctx.config.site.base_url}{path}?{urlencode(query)}"


def lifetime_text(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} hours" if hours >= 1 else f"{seconds / 60:g} minutes"


def guard_interval(ctx: Context, email: str, tag: str) -> None:
    """Answer 429 before minting a token that could not be mailed anyway."""
    if wait := ctx.limits.mail_wait(f"{tag}:{email}", ctx.api.mail_interval_seconds):
        raise _too_soon(email, wait)


def _too_soon(to: str, wait: float) -> ApiError:
    return ApiError(
        429,
        f"{to} was asked for recently: use the token mailed then, or ask again"
        f" in {math.ceil(wait)} s",
        retry_after=wait,
    )
