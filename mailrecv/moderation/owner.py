"""A list owner's pages: find, add and remove members; change the list's settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Response, request

from mailrecv.moderation.web import (
    PREFIX,
    Context,
    Refused,
    blueprint,
    context,
    owns,
    redirect,
    render,
    signed_in,
)
from routemail import listedit, owners
from routemail.config import MailingList, load
from routemail.errors import RoutemailError

MAX_SHOWN = 200  # members listed at once; a search narrows it


def owned_list(ctx: Context, name: str, who: str) -> MailingList:
    """The named list when who owns it: 404 when there is none, 403 when who does not."""
    mlist = ctx.config.lists.get(name.lower())
    if mlist is None:
        raise Refused(404, f"There is no list called {name[:80]} in lists.toml.")
    if not owns(ctx, mlist.name, who):
        raise Refused(403, f"{who} is not the owner of {mlist.name}.")
    return mlist


@blueprint.get("/lists/<name>/members")
def members(name: str) -> Response:
    me = signed_in().email
    ctx = context()
    return _members_page(owned_list(ctx, name, me))


def _members_page(mlist: MailingList, note: str = "") -> Response:
    query = request.args.get("q", "").strip()[:200]
    found = [m for m in mlist.members if query.lower() in m.lower()]
    return render(
        "members.html",
        title=f"Members of {mlist.name}",
        mlist=mlist,
        query=query,
        found=found[:MAX_SHOWN],
        more=max(0, len(found) - MAX_SHOWN),
        note=note,
    )


@blueprint.post("/lists/<name>/members")
def add_members(name: str) -> Response:
    me = signed_in().email
    ctx = context()
    mlist = owned_list(ctx, name, me)
    given = _lines(request.form.get("addresses", ""))
    if not given:
        raise Refused(400, "Give at least one address, like ann@example.com.")
    invite = request.form.get("invite") == "1"
    done = _change(
        lambda: owners.add_members(ctx.config, ctx.spool, mlist.name, given, _actor(me), invite)
    )
    return _back(mlist, _outcome(done))


@blueprint.post("/lists/<name>/members/remove")
def remove_member(name: str) -> Response:
    me = signed_in().email
    ctx = context()
    mlist = owned_list(ctx, name, me)
    given = _lines(request.form.get("address", ""))
    done = _change(
        lambda: owners.remove_members(ctx.config, ctx.spool, mlist.name, given, _actor(me))
    )
    return _back(mlist, _outcome(done))


def _lines(text: str) -> list[str]:
    """Addresses from a form field: separated by lines, commas or spaces."""
    return [a for a in text.replace(",", " ").split() if a]


def _actor(me: str) -> owners.Actor:
    return owners.Actor(me, "web")


def _change(make: Callable[[], Any]) -> Any:
    """Make an owner's change; its refusal as a page that says why."""
    try:
        return make()
    except owners.OwnerError as exc:
        raise Refused(400, f"Nothing changed: {exc}.") from exc
    except listedit.NoSuchList as exc:
        raise Refused(404, str(exc)) from exc
    except listedit.ListEditError as exc:
        raise Refused(503, f"The list cannot be changed right now: {exc}") from exc
    except RoutemailError as exc:
        raise Refused(400, f"Nothing changed: {exc}.") from exc


def _outcome(done: dict[str, str]) -> str:
    return "; ".join(f"{who}: {what}" for who, what in done.items())


def _back(mlist: MailingList, note: str) -> Response:
    """The members page again, as it is now, saying what was done. Rendered, not
    redirected to with the words in the URL: a link could then make the page say
    anything."""
    return _members_page(owners.named_list(load(context().settings.config_path), mlist.name), note)


@blueprint.route("/lists/<name>/settings", methods=["GET", "POST"])
def settings(name: str) -> Response:
    me = signed_in().email
    ctx = context()
    mlist = owned_list(ctx, name, me)
    if request.method == "GET":
        return _settings_form(mlist)
    form = request.form
    rule = form.get("posters", "")
    # Browsers send a textarea's line breaks as CR LF; lists.toml keeps plain ones.
    changes: dict[str, Any] = {
        key: form.get(key, "").replace("\r\n", "\n") for key in owners.TEXT_SETTINGS
    }
    changes["posters"] = _lines(form.get("posters_addresses", "")) if rule == "addresses" else rule
    changes["moderators"] = _lines(form.get("moderators", ""))
    admin = ctx.state.list_administrator(mlist)
    try:
        changed = owners.update_settings(
            ctx.config, ctx.spool, mlist.name, _differing(mlist, changes), _actor(me), admin
        )
    except listedit.NoSuchList as exc:
        raise Refused(404, str(exc)) from exc
    except RoutemailError as exc:
        # The form again, as typed, with what to fix.
        return _settings_form(mlist, f"Nothing changed: {exc}.", 400, form)
    return redirect(
        f"{PREFIX}/lists/{mlist.name}/settings?{urlencode({'saved': ','.join(changed) or '-'})}"
    )


def _differing(mlist: MailingList, changes: dict[str, Any]) -> dict[str, Any]:
    """The settings the form changes: the whole form comes back each time, and a value
    left at its default must not be written into lists.toml as if chosen."""
    posters = mlist.posters if isinstance(mlist.posters, str) else list(mlist.posters)
    now = {key: getattr(mlist, key) for key in owners.TEXT_SETTINGS}
    now.update(posters=posters, moderators=list(mlist.moderators))
    return {key: value for key, value in changes.items() if value != now[key]}


def _settings_form(
    mlist: MailingList, error: str = "", status: int = 200, typed: Any = None
) -> Response:
    posters = mlist.posters
    shown = {
        "description": mlist.description,
        "subject_prefix": mlist.subject_prefix,
        "header": mlist.header,
        "footer": mlist.footer,
        "posters": posters if isinstance(posters, str) else "addresses",
        "posters_addresses": "\n".join(posters) if isinstance(posters, tuple) else "",
        "moderators": "\n".join(mlist.moderators),
    }
    if typed is not None:
        shown.update({key: typed.get(key, "") for key in shown})
    return render(
        "settings.html",
        status,
        title=f"Settings of {mlist.name}",
        mlist=mlist,
        form=shown,
        error=error,
        note=_saved(request.args.get("saved")),
    )


def _saved(value: str | None) -> str:
    """The note after saving ("saved" in the query names the settings changed): shown
    only when it names settings, so a link cannot make the page say anything else."""
    if value == "-":
        return "Nothing to change."
    names = (value or "").split(",")
    return f"Saved: {', '.join(names)}." if value and set(names) <= set(owners.SETTINGS) else ""
