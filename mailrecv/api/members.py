"""Membership: subscribing and leaving by mailed token, and removal by the administrator."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from flask import Response, jsonify

from mailrecv.api.accounts import administrator, require_administrator
from mailrecv.api.confirmations import (
    claim,
    deliver,
    guard_interval,
    lifetime_text,
    link,
    send_mail,
)
from mailrecv.api.context import ApiError, Context, blueprint, context
from mailrecv.api.fields import address, body, existing_list, token_field
from mailrecv.api.limits import reserve_guess, right_guess
from routemail import addresses, listedit, owners
from routemail.config import MailingList

log = logging.getLogger(__name__)


def subscribe(ctx: Context, mlist: MailingList, who: str) -> dict[str, Any]:
    """Mail who a confirmation token; members get one too, so the answer tells nothing."""
    guard_interval(ctx, who, "subscribe")
    lifetime = ctx.api.token_hours * 3600
    issued = ctx.state.issue("subscribe", who, lifetime, mlist.name)
    url = link(ctx, f"/lists/{mlist.name}/confirm", address=who, token=issued.token)
    send_mail(
        ctx,
        who,
        f"Confirm your subscription to {mlist.name}",
        f"Someone, probably you, asked to subscribe {who} to the list {mlist.name}"
        f" ({mlist.name}@{ctx.config.site.domain}).\n\nTo confirm, open\n\n  {url}\n\n"
        f"and press the button, or give this token to the API:\n\n  {issued.token}\n\n"
        f"It is valid for {lifetime_text(lifetime)}. If you did not ask, ignore this mail:"
        " nothing happens without your confirmation.\n",
        "subscribe",
    )
    return {"list": mlist.name, "address": who, "status": "pending"}


def confirm_subscription(ctx: Context, mlist: MailingList, who: str, token: str) -> dict[str, Any]:
    reservation = reserve_guess(ctx, who)
    with ctx.state.transaction() as db:
        taken = ctx.state.take(db, "subscribe", who, token, mlist.name)
        if taken is not None:
            _edit_members(ctx, db, mlist, who, add=True, by=who)
    if taken is None:
        raise ApiError(403, "wrong or expired token; subscribe again for a new one")
    right_guess(ctx, reservation)
    return {"list": mlist.name, "address": who, "status": "member"}


def request_unsubscribe(ctx: Context, mlist: MailingList, who: str) -> dict[str, Any]:
    """Mail a member a token that removes them. The answer, its limits included, is the
    same for non-members, so it tells nobody who is on the list."""
    _protect_administrator(ctx, mlist, who)
    key = claim(ctx, who, "unsubscribe")
    if addresses.contains(mlist.members, who):
        lifetime = ctx.api.token_hours * 3600
        issued = ctx.state.issue("unsubscribe", who, lifetime, mlist.name)
        url = link(ctx, f"/lists/{mlist.name}/unsubscribe", address=who, token=issued.token)
        deliver(
            ctx,
            key,
            who,
            f"Confirm leaving {mlist.name}",
            f"Someone, probably you, asked to remove {who} from the list {mlist.name}.\n\n"
            f"To leave, open\n\n  {url}\n\nand press the button, or give this token to the"
            f" API:\n\n  {issued.token}\n\nIt is valid for {lifetime_text(lifetime)}."
            " If you want to stay, ignore this mail.\n",
            quiet=True,
        )
    return {"list": mlist.name, "address": who, "status": "pending"}


def unsubscribe(ctx: Context, mlist: MailingList, who: str, token: str) -> dict[str, Any]:
    """Remove who with a mailed token (list mail's own one-click links go to
    /unsubscribe/<list>, mailrecv.feedback)."""
    _protect_administrator(ctx, mlist, who)
    reservation = reserve_guess(ctx, who)
    with ctx.state.transaction() as db:
        taken = ctx.state.take(db, "unsubscribe", who, token, mlist.name)
        if taken is not None:
            _edit_members(ctx, db, mlist, who, add=False, by=who)
    if taken is None:
        raise ApiError(403, "wrong or expired token; ask to unsubscribe again for a new one")
    right_guess(ctx, reservation)
    return {"list": mlist.name, "address": who, "status": "removed"}


def remove_member(ctx: Context, mlist: MailingList, who: str) -> dict[str, Any]:
    admin = require_administrator(ctx, mlist)
    _protect_administrator(ctx, mlist, who)
    if not addresses.contains(mlist.members, who):
        raise ApiError(404, f"{who} is not a member of {mlist.name}")
    with ctx.state.transaction() as db:
        _edit_members(ctx, db, mlist, who, add=False, by=admin)
    return {"list": mlist.name, "address": who, "status": "removed"}


def _protect_administrator(ctx: Context, mlist: MailingList, who: str) -> None:
    if addresses.same(administrator(ctx, mlist) or "", who):
        raise ApiError(409, f"{who} administers {mlist.name} and cannot be unsubscribed")


def _edit_members(
    ctx: Context, db: sqlite3.Connection, mlist: MailingList, who: str, add: bool, by: str
) -> None:
    """Add or remove who in lists.toml, inside the state transaction db, as `by`; a
    change retires the one-click unsubscribe links of copies sent before it, and is a
    line in the log."""
    path = ctx.settings.config_path
    try:
        edit = listedit.add_member if add else listedit.remove_member
        if edit(path, mlist.name, who):
            ctx.state.membership_changed(db, mlist.name, who)
            what = f"{'added' if add else 'removed'} member {who}"
            owners.log_change(
                ctx.settings.spool.ensure(), mlist.name, what, owners.Actor(by, "api")
            )
    except listedit.NoSuchList as exc:
        raise ApiError(404, f"no list named {mlist.name!r}") from exc
    except listedit.ListEditError as exc:
        log.error("cannot edit %s: %s", path, exc)
        raise ApiError(503, "the list cannot be changed right now; retry later") from exc


@blueprint.get("/lists/<name>/members")
def members_index(name: str) -> Response:
    ctx = context()
    mlist = existing_list(ctx, name)
    require_administrator(ctx, mlist)
    return jsonify(list=mlist.name, members=list(mlist.members))


@blueprint.delete("/lists/<name>/members/<path:member>")
def members_delete(name: str, member: str) -> Response:
    who = address(member)
    ctx = context()
    return jsonify(remove_member(ctx, existing_list(ctx, name), who))


@blueprint.post("/lists/<name>/subscriptions")
def subscriptions_create(name: str) -> tuple[Response, int]:
    who = address(body().get("address"))
    ctx = context()
    return jsonify(subscribe(ctx, existing_list(ctx, name), who)), 202


@blueprint.post("/lists/<name>/subscriptions/confirm")
def subscriptions_confirm(name: str) -> Response:
    data = body()
    who, token = address(data.get("address")), token_field(data)
    ctx = context()
    mlist = existing_list(ctx, name)
    return jsonify(confirm_subscription(ctx, mlist, who, token))


@blueprint.post("/lists/<name>/unsubscriptions")
def unsubscriptions_create(name: str) -> tuple[Response, int]:
    who = address(body().get("address"))
    ctx = context()
    return jsonify(request_unsubscribe(ctx, existing_list(ctx, name), who)), 202


@blueprint.post("/lists/<name>/unsubscriptions/confirm")
def unsubscriptions_confirm(name: str) -> Response:
    data = body()
    who, token = address(data.get("address")), token_field(data)
    ctx = context()
    mlist = existing_list(ctx, name)
    return jsonify(unsubscribe(ctx, mlist, who, token))
