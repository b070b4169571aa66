"""Held messages in the API: list them, look at one, decide on one.

For the list's moderators (HTTP Basic, as the other calls), named and dynamic
lists alike, and the administrator of a named list; anyone else gets 403. The
work is routemail.held's, as for the web pages, mail and the shell; the
detail's text and attachments are routemail.preview's safe view.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify

from mailrecv.api.accounts import authenticate
from mailrecv.api.context import ApiError, Context, blueprint, context
from mailrecv.api.fields import body, list_name, text_field
from mailrecv.receive import start_routemail
from routemail import held, preview
from routemail.errors import UnknownMessage
from routemail.lists import Directory, ResolvedList, ResolverError

log = logging.getLogger(__name__)


def require_moderator(ctx: Context, name: str) -> tuple[str, ResolvedList]:
    """The account and the list it moderates (or administers)."""
    name = list_name(name)
    account = authenticate(ctx)
    try:
        mlist = Directory(ctx.config).resolve(name)
    except ResolverError as exc:
        log.error("cannot resolve %s: %s", name, exc)
        raise ApiError(503, f"the list {name} cannot be looked up right now; retry later") from exc
    if mlist is None:
        raise ApiError(404, f"no list named {name!r}")
    named = ctx.config.lists.get(name)
    admin = ctx.state.list_administrator(named) if named else None
    if not held.may_moderate(ctx.config, admin, mlist, account):
        raise ApiError(403, f"{account} is not a moderator of {name}")
    return account, mlist


def _not_held(exc: held.NotHeld | held.AlreadyDecided) -> ApiError:
    if isinstance(exc, held.AlreadyDecided):
        return ApiError(409, str(exc))
    return ApiError(404, str(exc))


def detail(ctx: Context, mlist: ResolvedList, msg_id: str) -> dict[str, Any]:
    """The held message's fields, headers summary, text and attachments."""
    spool = ctx.settings.spool
    try:
        found = held.find(ctx.config, spool, msg_id, mlist.name)
        raw = spool.read_message(msg_id)
    except (held.NotHeld, held.AlreadyDecided) as exc:
        raise _not_held(exc) from None
    except UnknownMessage:
        raise ApiError(404, f"no message {msg_id} is held for {mlist.name}") from None
    shown = preview.preview(raw).as_json()
    return found.as_json() | {k: shown[k] for k in ("headers", "text", "attachments")}


def decide(ctx: Context, account: str, mlist: ResolvedList, msg_id: str) -> tuple[Response, int]:
    data = body()
    action = data.get("action")
    if action not in held.ACTIONS:
        raise ApiError(400, "action: expected approve, reject or discard")
    reason = ""
    if action == held.REJECT:
        reason = text_field(data, "reason", held.MAX_REASON, required=False)
    elif "reason" in data:
        raise ApiError(400, "reason: only a rejection carries a reason")
    spool = ctx.settings.spool
    try:
        decision = held.decide(
            ctx.config, spool, msg_id, mlist.name, action, account, "api", reason
        )
    except held.AlreadyDecided as exc:
        answer = {"error": str(exc), "decision": exc.decision.as_json()}
        return jsonify(answer), 409
    except held.NotHeld as exc:
        raise ApiError(404, str(exc)) from None
    if action != held.DISCARD and ctx.settings.on_receipt == "run":
        start_routemail(ctx.settings)  # deliver it, or tell its author, now
    return jsonify(decision.as_json()), 200


@blueprint.get("/lists/<name>/held")
def held_index(name: str) -> Response:
    ctx = context()
    _, mlist = require_moderator(ctx, name)
    found = held.held_on(ctx.config, ctx.settings.spool, mlist.name)
    return jsonify(held=[h.as_json() for h in found])


@blueprint.get("/lists/<name>/held/<msg_id>")
def held_show(name: str, msg_id: str) -> Response:
    ctx = context()
    _, mlist = require_moderator(ctx, name)
    return jsonify(detail(ctx, mlist, msg_id))


@blueprint.post("/lists/<name>/held/<msg_id>")
def held_decide(name: str, msg_id: str) -> tuple[Response, int]:
    ctx = context()
    account, mlist = require_moderator(ctx, name)
    return decide(ctx, account, mlist, msg_id)
