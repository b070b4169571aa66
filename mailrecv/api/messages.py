"""A message's timeline: GET /messages/<id>, for those who may see it.

The moderators and the administrator of the message's lists may (HTTP Basic,
as the other calls), and for transactional mail whoever holds the send key
(Bearer). Anyone else gets the same 404 as for an id that names nothing, so
the answer tells nobody which ids exist.
"""

from __future__ import annotations

from flask import Response, jsonify, request

from mailrecv.api.accounts import authenticate
from mailrecv.api.context import ApiError, Context, blueprint, context
from mailrecv.api.send import require_send_key
from routemail import addresses, timeline
from routemail.errors import UnknownMessage
from routemail.lists import Directory


def _not_found(msg_id: str) -> ApiError:
    return ApiError(404, f"no message {msg_id[:40]!r} that these credentials may see")


def _may_see(ctx: Context, account: str, view: timeline.Timeline) -> bool:
    """Whether account moderates or administers one of the message's lists."""
    directory = Directory(ctx.config)
    names = set(view.lists)
    for destination in view.destinations:
        if (name := directory.list_name(destination)) is not None:
            names.add(name.lower())
    for name in names:
        found = directory.match(name)
        if found is None:
            continue
        # A dynamic list's moderators are those lists.toml names for its pattern: a
        # status query never runs a resolver.
        if addresses.contains(found.moderators, account):
            return True
        mlist = ctx.config.lists.get(name)
        if mlist is not None and addresses.same(ctx.state.list_administrator(mlist) or "", account):
            return True
    return False


@blueprint.get("/messages/<msg_id>")
def message_show(msg_id: str) -> Response:
    ctx = context()
    bearer = request.headers.get("Authorization", "").lower().startswith("bearer ")
    account = None
    if bearer:
        require_send_key(ctx)
    else:
        account = authenticate(ctx)
    try:
        view = timeline.of(ctx.settings.spool, msg_id, ctx.config.site.admin)
    except UnknownMessage:
        raise _not_found(msg_id) from None
    allowed = view.transactional if account is None else _may_see(ctx, account, view)
    if not allowed:
        raise _not_found(msg_id)
    return jsonify(view.as_json())
