"""Confirmation mails: the mailed token links and their per-address, per-client limits."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlencode

from mailrecv.api.context import ApiError, Context
from routemail import notify

log = logging.getLogger(__name__)


def send_mail(ctx: Context, to: str, subject: str, text: str, tag: str) -> None:
    """Mail to, at most once per mail_interval_seconds per (address, kind), a limited number
    per client."""
    window = ctx.api.window_seconds
    if ctx.state.count(f"mail-client:{ctx.client}", window) >= ctx.api.mails_per_client:
        raise ApiError(
            429, "this client asked for too many confirmation mails; retry later", window
        )
    key = f"{tag}:{to}"
    wait = ctx.state.claim_mail(key, ctx.api.mail_interval_seconds)
    if wait:
        raise ApiError(
            429,
            f"a confirmation mail went to {to} recently: use the token in it, or ask again"
            f" in {math.ceil(wait)} s",
            retry_after=wait,
        )
    result = notify.send(ctx.config, ctx.settings.spool, to, subject, text, tag)
    if result.detail.startswith("suppressed"):
        ctx.state.release_mail(key)
        raise ApiError(409, f"no mail goes to {to}: it is {result.detail}")
    if not result.sent:
        ctx.state.release_mail(key)
        log.error("cannot send %s mail to %s: %s", tag, to, result.detail)
        raise ApiError(503, f"the mail to {to} could not be sent; retry later")
    ctx.state.bump(f"mail-client:{ctx.client}", window)


def link(ctx: Context, path: str, **query: str) -> str:
    return f"{ctx.config.site.base_url}{path}?{urlencode(query)}"


def lifetime_text(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} hours" if hours >= 1 else f"{seconds / 60:g} minutes"


def guard_interval(ctx: Context, email: str, tag: str) -> None:
    """Answer 429 before minting a token that could not be mailed anyway."""
    row = ctx.state.db.execute(
        "SELECT sent FROM last_mail WHERE email = ?", (f"{tag}:{email}",)
    ).fetchone()
    interval = ctx.api.mail_interval_seconds
    if row is not None and row[0] + interval > ctx.state.clock():
        wait = row[0] + interval - ctx.state.clock()
        raise ApiError(
            429,
            f"a confirmation mail went to {email} recently: use the token in it, or ask again"
            f" in {math.ceil(wait)} s",
            retry_after=wait,
        )
