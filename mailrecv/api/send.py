"""Transactional mail: POST /send queues a message from the site, given the bearer key."""

from __future__ import annotations

import hmac
import logging
import os

from flask import Response, jsonify, request

from mailrecv.api.context import ApiError, Context, blueprint, context
from mailrecv.api.fields import MAX_SUBJECT, address, body, line_field, text_field
from mailrecv.api.limits import reserve_guess, right_guess
from mailrecv.receive import start_routemail
from routemail import addresses, outgoing
from routemail.errors import SpoolError

log = logging.getLogger(__name__)


def require_send_key(ctx: Context) -> None:
    """The bearer key from the environment variable [api] send_key_env names."""
    expected = os.environ.get(ctx.api.send_key_env, "")
    if not expected:
        raise ApiError(503, f"sending is off: {ctx.api.send_key_env} is not set on the server")
    # Counted per client only: a shared counter would let anyone lock every client out.
    reservation = reserve_guess(ctx, f"send-key:{ctx.client}")
    auth = request.headers.get("Authorization", "")
    scheme, _, given = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), expected.encode("utf-8")
    ):
        raise ApiError(
            401,
            "give the API key as Authorization: Bearer <key>",
            challenge='Bearer realm="routemail"',
        )
    right_guess(ctx, reservation)


@blueprint.post("/send")
def send_create() -> tuple[Response, int]:
    ctx = context()
    require_send_key(ctx)
    data = body()
    to = data.get("to")
    if not isinstance(to, list) or not to or len(to) > outgoing.MAX_RECIPIENTS:
        raise ApiError(400, f"to: expected a list of 1 to {outgoing.MAX_RECIPIENTS} addresses")
    recipients = [address(a, "to") for a in to]
    sender = text_field(data, "from", 64, required=False) or "no-reply"
    if addresses.normalize(f"{sender}@{ctx.config.site.domain}") is None:
        raise ApiError(400, f"from: {sender[:64]!r} is not a local part on the site's domain")
    reply_to = data.get("reply_to")
    raw = outgoing.compose(
        ctx.config,
        recipients,
        line_field(data, "subject", MAX_SUBJECT),
        text_field(data, "text", ctx.api.max_request_bytes),
        html=text_field(data, "html", ctx.api.max_request_bytes, required=False) or None,
        from_local=sender,
        reply_to=address(reply_to, "reply_to") if reply_to is not None else None,
    )
    try:
        receipt, _ = outgoing.queue(ctx.config, ctx.settings.spool.ensure(), raw, recipients)
    except SpoolError as exc:
        log.error("send: spool not writable: %s", exc)
        raise ApiError(503, "the spool is not writable; retry later") from exc
    if ctx.settings.on_receipt == "run":
        start_routemail(ctx.settings)
    return jsonify(id=receipt.id, recipients=len(recipients), status="queued"), 202
