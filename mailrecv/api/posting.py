"""Posting to a list through the API: with the administrator's password, or by mailed token."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify, request

from mailrecv.api.accounts import require_administrator
from mailrecv.api.confirmations import guard_interval, lifetime_text, link, send_mail
from mailrecv.api.context import PREFIX, ApiError, Context, blueprint, context
from mailrecv.api.fields import (
    MAX_SUBJECT,
    address,
    body,
    existing_list,
    line_field,
    text_field,
    token_field,
)
from mailrecv.api.limits import reserve_guess, right_guess
from mailrecv.receive import start_routemail
from routemail import compose
from routemail.config import VERDICT_NAMES, MailingList
from routemail.errors import SpoolError

log = logging.getLogger(__name__)


def post(ctx: Context, mlist: MailingList, data: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """With the administrator's credentials queue now; otherwise mail the author a token."""
    subject = line_field(data, "subject", MAX_SUBJECT)
    text = text_field(data, "body", ctx.api.max_request_bytes)
    if request.authorization is not None:
        admin = require_administrator(ctx, mlist)
        author = address(data.get("from", admin), "from")
        if author != admin:
            raise ApiError(403, f"with {admin}'s credentials you can post only as {admin}")
        return queue_post(ctx, mlist, author, subject, text, "administrator credentials"), 202
    author = address(data.get("from"), "from")
    guard_interval(ctx, author, "post")
    lifetime = ctx.api.token_hours * 3600
    payload = json.dumps({"subject": subject, "body": text})
    issued = ctx.state.issue("post", author, lifetime, mlist.name, payload)
    url = link(ctx, f"/lists/{mlist.name}/post", address=author, token=issued.token)
    send_mail(
        ctx,
        author,
        f"Confirm your message to {mlist.name}: {subject[:60]}",
        f"Someone, probably you, asked to send a message as {author} to the list"
        f" {mlist.name}, subject:\n\n  {subject}\n\nTo send it, open\n\n  {url}\n\nand press"
        f" the button, or give this token to the API:\n\n  {issued.token}\n\nIt is valid for"
        f" {lifetime_text(lifetime)}. If you did not ask, ignore this mail: nothing is sent.\n",
        "post",
    )
    return {"list": mlist.name, "from": author, "status": "pending"}, 202


def confirm_post(ctx: Context, mlist: MailingList, who: str, token: str) -> dict[str, Any]:
    reservation = reserve_guess(ctx, who)
    with ctx.state.transaction() as db:
        payload = ctx.state.take(db, "post", who, token, mlist.name)
    if payload is None:
        raise ApiError(403, "wrong, used or expired token; post the message again")
    right_guess(ctx, reservation)
    pending = json.loads(payload)
    return queue_post(ctx, mlist, who, pending["subject"], pending["body"], "mailed token")


def queue_post(
    ctx: Context, mlist: MailingList, author: str, subject: str, text: str, how: str
) -> dict[str, Any]:
    """Put the message into the spool addressed to the list, as if it came by mail.

    The author proved control of the address (token) or gave the password, the
    equivalent of passing DKIM and DMARC; the list's posting policy still applies.
    """
    site = ctx.config.site
    list_address = f"{mlist.name}@{site.domain}"
    fields = [
        compose.addresses("From", [("", author)]),
        compose.addresses("To", [("", list_address)]),
        compose.subject(subject),
        *compose.standard(site.domain),
        compose.made("X-Routemail-Posted-Via", f"{PREFIX}; authenticated by {how}"),
    ]
    verdicts = dict.fromkeys(VERDICT_NAMES, "PASS")
    try:
        raw = compose.message(fields, text)
        receipt = ctx.settings.spool.ensure().receive(raw, [list_address], verdicts)
    except SpoolError as exc:
        log.error("spool not writable: %s", exc)
        raise ApiError(503, "the message could not be queued; retry later") from exc
    if ctx.settings.on_receipt == "run":
        start_routemail(ctx.settings)
    return {"list": mlist.name, "from": author, "status": "queued", "id": receipt.id}


@blueprint.post("/lists/<name>/messages")
def messages_create(name: str) -> tuple[Response, int]:
    data = body()
    ctx = context()
    mlist = existing_list(ctx, name)
    result, status = post(ctx, mlist, data)
    return jsonify(result), status


@blueprint.post("/lists/<name>/messages/confirm")
def messages_confirm(name: str) -> tuple[Response, int]:
    data = body()
    who, token = address(data.get("address")), token_field(data)
    ctx = context()
    mlist = existing_list(ctx, name)
    return jsonify(confirm_post(ctx, mlist, who, token)), 202
