"""What a list's administrator changes: adding members, and the list's settings.

The changes are routemail.owners', as for the web pages and the CLI: made in
lists.toml by the locked, validated, atomic edit, each a line in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify

from mailrecv.api.accounts import require_administrator
from mailrecv.api.context import ApiError, Context, blueprint, context
from mailrecv.api.fields import body, existing_list
from mailrecv.receive import start_routemail
from routemail import listedit, owners
from routemail.config import MailingList, load
from routemail.spool import Spool

log = logging.getLogger(__name__)


def settings_of(ctx: Context, mlist: MailingList) -> dict[str, Any]:
    return {
        "name": mlist.name,
        "address": f"{mlist.name}@{ctx.config.site.domain}",
        "description": mlist.description,
        "subject_prefix": mlist.subject_prefix,
        "header": mlist.header,
        "footer": mlist.footer,
        "posters": mlist.posters if isinstance(mlist.posters, str) else list(mlist.posters),
        "moderators": list(mlist.moderators),
    }


def _administered(name: str) -> tuple[Context, MailingList, Spool, owners.Actor]:
    """The request's context, the named list, the spool, and its administrator acting
    through the API (401 or 403 for anyone else)."""
    ctx = context()
    mlist = existing_list(ctx, name)
    admin = require_administrator(ctx, mlist)
    return ctx, mlist, ctx.settings.spool.ensure(), owners.Actor(admin, "api")


def _edit_error(exc: listedit.ListEditError) -> ApiError:
    if isinstance(exc, owners.OwnerError):
        return ApiError(400, str(exc))
    if isinstance(exc, listedit.NoSuchList):
        return ApiError(404, "no such list")
    text = str(exc)
    if "would make" in text:  # the file's own validation refused the value
        return ApiError(400, text.split(": ", 1)[-1].splitlines()[-1][:300])
    log.error("cannot edit the lists: %s", exc)
    return ApiError(503, "the list cannot be changed right now; retry later")


@blueprint.post("/lists/<name>/members")
def members_create(name: str) -> Response:
    data = body()
    wanted = data.get("addresses")
    if not isinstance(wanted, list) or not wanted:
        raise ApiError(400, "addresses: expected a list of addresses")
    invite = data.get("invite", False)
    if not isinstance(invite, bool):
        raise ApiError(400, "invite: expected true or false")
    ctx, mlist, spool, actor = _administered(name)
    try:
        result = owners.add_members(ctx.config, spool, mlist.name, wanted, actor, invite)
    except listedit.ListEditError as exc:
        raise _edit_error(exc) from exc
    if ctx.settings.on_receipt == "run":
        start_routemail(ctx.settings)  # the welcome mails
    return jsonify(list=mlist.name, members=result)


@blueprint.patch("/lists/<name>")
def lists_update(name: str) -> Response:
    data = body()
    if not data:
        raise ApiError(400, f"give one or more of {', '.join(owners.SETTINGS)}")
    ctx, mlist, spool, actor = _administered(name)
    try:
        owners.update_settings(ctx.config, spool, mlist.name, data, actor, keep_moderator=actor.who)
    except listedit.ListEditError as exc:
        raise _edit_error(exc) from exc
    ctx.config = load(ctx.settings.config_path)
    return jsonify(settings_of(ctx, ctx.config.lists[mlist.name]))
