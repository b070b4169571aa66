"""Lists: their public description, and creation by a verified account."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify

from mailrecv.api.accounts import authenticate
from mailrecv.api.context import ApiError, Context, blueprint, context
from mailrecv.api.fields import body, existing_list, line_field, list_name, text_field
from routemail import listedit, owners
from routemail.config import MailingList, load

POSTERS = ("members", "moderators", "anyone")
MAX_DESCRIPTION = 200

log = logging.getLogger(__name__)


def list_info(ctx: Context, mlist: MailingList) -> dict[str, Any]:
    posters = mlist.posters if isinstance(mlist.posters, str) else "listed"
    return {
        "name": mlist.name,
        "address": f"{mlist.name}@{ctx.config.site.domain}",
        "description": mlist.description,
        "posters": posters,
        "member_count": len(mlist.members),
    }


def create_list(ctx: Context, admin: str, data: Mapping[str, Any]) -> dict[str, Any]:
    name = list_name(text_field(data, "name", 64))
    description = line_field(data, "description", MAX_DESCRIPTION, required=False)
    posters = data.get("posters", "members")
    if posters not in POSTERS:
        raise ApiError(400, "posters: expected members, moderators or anyone")
    spool = ctx.settings.spool.ensure()
    try:
        owners.create_list(
            ctx.config, spool, name, admin, owners.Actor(admin, "api"), description, str(posters)
        )
    except listedit.ListExists as exc:
        raise ApiError(409, f"{_first_line(exc)}; choose another name") from exc
    except owners.OwnerError as exc:
        raise ApiError(400, str(exc)) from exc
    except listedit.ListEditError as exc:
        log.warning("cannot add list %s: %s", name, exc)
        raise ApiError(409, f"the name {name!r} cannot be used: {_first_line(exc)}") from exc
    ctx.config = load(ctx.settings.config_path)
    return list_info(ctx, ctx.config.lists[name])


def _first_line(exc: Exception) -> str:
    text = str(exc)
    # A path would tell a client nothing it can act on.
    return text.split(": ", 1)[-1].splitlines()[-1][:200]


@blueprint.get("/lists")
def lists_index() -> Response:
    ctx = context()
    return jsonify(lists=[list_info(ctx, m) for m in ctx.config.lists.values()])


@blueprint.post("/lists")
def lists_create() -> tuple[Response, int]:
    data = body()
    ctx = context()
    admin = authenticate(ctx)
    return jsonify(create_list(ctx, admin, data)), 201


@blueprint.get("/lists/<name>")
def lists_show(name: str) -> Response:
    ctx = context()
    return jsonify(list_info(ctx, existing_list(ctx, name)))
