"""A moderator's lists, what each holds, a held message's preview, and the decision on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from flask import Response, request

from mailrecv.moderation.web import (
    PREFIX,
    Context,
    Refused,
    blueprint,
    context,
    may_moderate,
    moderated_list,
    owns,
    redirect,
    render,
    signed_in,
)
from mailrecv.receive import start_routemail
from routemail import held, preview
from routemail.errors import RoutemailError
from routemail.lists import Directory, ResolverError

DECISIONS = {held.APPROVE: "approved", held.REJECT: "rejected", held.DISCARD: "discarded"}


@dataclass(frozen=True)
class ListRow:
    name: str
    description: str
    held: int
    owner: bool


@blueprint.get("/lists")
def my_lists() -> Response:
    me = signed_in().email
    ctx = context()
    return render("lists.html", title="Your lists", lists=_lists_of(ctx, me))


def _lists_of(ctx: Context, me: str) -> list[ListRow]:
    """The lists me moderates: the named ones, and the dynamic ones holding mail."""
    waiting = Counter(m.list for m in _held_on(ctx))
    directory = Directory(ctx.config)
    rows = []
    for name in sorted(set(ctx.config.lists) | set(waiting)):
        try:
            found = directory.resolve(name)
        except ResolverError:
            continue  # cannot tell now whether me moderates it; the list page says why
        if found is not None and may_moderate(ctx, found, me):
            description = found.settings.description
            rows.append(ListRow(name, description, waiting[name], owns(ctx, name, me)))
    return rows


@blueprint.get("/lists/<name>")
def held_list(name: str) -> Response:
    me = signed_in().email
    ctx = context()
    mlist = moderated_list(ctx, name, me)
    return render(
        "list.html",
        title=f"Held for {mlist.name}",
        mlist=mlist,
        owner=owns(ctx, mlist.name, me),
        messages=_held_on(ctx, mlist.name),
        decided=_decided(request.args.get("decided", "")),
    )


@blueprint.get("/lists/<name>/held/<msg_id>")
def message(name: str, msg_id: str) -> Response:
    me = signed_in().email
    ctx = context()
    mlist = moderated_list(ctx, name, me)
    waiting = _find(ctx, msg_id, mlist.name)
    shown = preview.preview(ctx.spool.message_path(waiting.id).read_bytes())
    return render(
        "held.html",
        title=waiting.subject or "(no subject)",
        mlist=mlist,
        held=waiting,
        preview=shown,
        max_reason=held.MAX_REASON,
    )


@blueprint.post("/lists/<name>/held/<msg_id>")
def decide(name: str, msg_id: str) -> Response:
    me = signed_in().email
    ctx = context()
    mlist = moderated_list(ctx, name, me)
    action = request.form.get("action", "")
    if action not in DECISIONS:
        raise Refused(400, "Choose approve, reject or discard.")
    reason = request.form.get("reason", "").strip() if action == held.REJECT else ""
    if action == held.REJECT and not reason:
        raise Refused(400, "Say why the message is rejected: the author is told the reason.")
    try:
        held.decide(ctx.config, ctx.spool, msg_id, mlist.name, action, me, "web", reason)
    except held.AlreadyDecided as exc:
        decision = exc.decision
        raise Refused(409, f"Nothing changed: {decision.id} was {decision.summary}.") from exc
    except held.NotHeld as exc:
        raise Refused(404, str(exc)) from exc
    except RoutemailError as exc:
        raise Refused(400, str(exc)) from exc
    if action != held.DISCARD and ctx.settings.on_receipt == "run":
        start_routemail(ctx.settings)
    return redirect(f"{PREFIX}/lists/{mlist.name}?decided={msg_id}.{action}")


def _held_on(ctx: Context, listname: str | None = None) -> list[held.HeldMessage]:
    """What is held (for listname); nothing before the spool's first message made it."""
    if not ctx.spool.queue.is_dir():
        return []
    return held.held_on(ctx.config, ctx.spool, listname)


def _decided(value: str) -> str:
    """The note after a decision ("id.action" in the query): shown only when well formed."""
    msg_id, _, action = value.partition(".")
    if action in DECISIONS and held.QUEUE_ID.fullmatch(msg_id):
        return f"Message {msg_id} {DECISIONS[action]}."
    return ""


def _find(ctx: Context, msg_id: str, listname: str) -> held.HeldMessage:
    try:
        return held.find(ctx.config, ctx.spool, msg_id, listname)
    except held.AlreadyDecided as exc:
        raise Refused(
            409, f"{exc.decision.id} is no longer held: it was {exc.decision.summary}."
        ) from exc
    except held.NotHeld as exc:
        raise Refused(404, f"No message {msg_id[:40]} is held for {listname}.") from exc
