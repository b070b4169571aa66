"""The list HTTP API under /api/v1: moderator accounts, lists, subscriptions, posting.

Every change a person must agree to is confirmed with a token mailed to
their address; the state lives in data/state.sqlite3 (routemail.state) and
lists in lists.toml (routemail.listedit). docs/api.md describes each call.
"""

from __future__ import annotations

import email.policy
import email.utils
import hmac
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from mailrecv.receive import start_routemail
from mailrecv.settings import Settings
from routemail import addresses, listedit, notify, outgoing, state
from routemail.config import LIST_NAME, VERDICT_NAMES, Config, MailingList, load, reserved_name
from routemail.errors import ConfigError, SpoolError
from routemail.state import State, StateError

PREFIX = "/api/v1"
POSTERS = ("members", "moderators", "anyone")
MAX_PASSWORD = 1024
MIN_PASSWORD = 10
MAX_SUBJECT = 200
MAX_DESCRIPTION = 200
# A hash that no password matches: checked when the account does not exist,
# so a wrong address costs as much time as a wrong password.
_DUMMY_HASH = state.hash_password("no account has this password")

log = logging.getLogger("mailrecv.api")
blueprint = Blueprint("api", __name__, url_prefix=PREFIX)


class ApiError(Exception):
    """An answer with an error status and a message that says what to do."""

    def __init__(
        self,
        status: int,
        message: str,
        retry_after: float | None = None,
        challenge: str = 'Basic realm="routemail", charset="UTF-8"',
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        h = {}
        if self.retry_after is not None:
            h["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.status == 401:
            h["WWW-Authenticate"] = self.challenge
        return h


@dataclass
class Context:
    """What one request works with."""

    settings: Settings
    config: Config
    state: State
    client: str

    @property
    def api(self) -> Any:
        return self.config.api


def register(app: Flask) -> None:
    """Add the API and the pages for people to the receiver's app."""
    from mailrecv import pages

    app.register_blueprint(blueprint)
    app.register_blueprint(pages.blueprint)
    app.teardown_appcontext(_close_state)


def context() -> Context:
    """The request's context, opened on first use (config, state database)."""
    ctx: Context | None = g.get("routemail_ctx")
    if ctx is not None:
        return ctx
    settings: Settings = current_app.config["ROUTEMAIL"]
    try:
        config = load(settings.config_path)
    except ConfigError as exc:
        log.error("lists.toml is invalid, the list API is unavailable: %s", exc)
        raise ApiError(503, "the list configuration is invalid; retry later") from exc
    try:
        db = State.open(settings.data_dir, settings.clock)
    except StateError as exc:
        log.error("%s", exc)
        raise ApiError(503, "the state database is unavailable; retry later") from exc
    ctx = Context(settings, config, db, request.remote_addr or "unknown")
    g.routemail_ctx = ctx
    if request.method == "POST":
        db.purge(config.api.account_hours * 3600)
    return ctx


def _close_state(exc: BaseException | None) -> None:
    ctx: Context | None = g.pop("routemail_ctx", None)
    if ctx is not None:
        ctx.state.close()


@blueprint.before_request
def _limit_size() -> None:
    settings: Settings = current_app.config["ROUTEMAIL"]
    try:
        limit = load(settings.config_path).api.max_request_bytes
    except ConfigError:
        limit = 256 * 1024
    # Flask answers 413 when a body grows past this, with or without Content-Length.
    request.max_content_length = limit


@blueprint.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
    limit = request.max_content_length
    return jsonify(error=f"the request body is larger than the {limit}-byte limit"), 413


@blueprint.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[Response, int, dict[str, str]]:
    return jsonify(error=exc.message), exc.status, exc.headers()


# -- input -------------------------------------------------------------------


def body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object body with Content-Type: application/json")
    return data


def text_field(data: Mapping[str, Any], key: str, limit: int, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ApiError(400, f"{key}: expected a non-empty string")
    if len(value) > limit:
        raise ApiError(400, f"{key}: longer than {limit} characters")
    return value


def address(value: Any, key: str = "address") -> str:
    norm = addresses.normalize(value) if isinstance(value, str) else None
    if norm is None:
        shown = repr(value)[:80]
        raise ApiError(400, f"{key}: {shown} is not a plain email address like ann@example.com")
    return norm


def list_name(name: str) -> str:
    lowered = name.lower()
    if not LIST_NAME.match(lowered):
        raise ApiError(
            400,
            f"{name[:80]!r} is not a list name: use 1-64 lower-case letters, digits and . _ + -,"
            " starting and ending with a letter or digit",
        )
    return lowered


def token_field(data: Mapping[str, Any]) -> str:
    value = data.get("token")
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise ApiError(400, "token: expected the token from the mail")
    return value


def existing_list(ctx: Context, name: str) -> MailingList:
    mlist = ctx.config.lists.get(list_name(name))
    if mlist is None:
        raise ApiError(404, f"no list named {name!r}")
    return mlist


# -- rate limits ---------------------------------------------------------------


# Failed checks at one address from all clients together may reach this many
# times guess_limit: one client alone can never lock the owner out, and
# guessing spread over many clients is still bounded.
GUESS_SPREAD = 10


def _guess_counters(ctx: Context, who: str) -> list[tuple[str, int]]:
    limit = ctx.api.guess_limit
    return [
        (f"guess:{who}|{ctx.client}", limit),  # this client at this address
        (f"guess-client:{ctx.client}", limit),  # this client, any address
        (f"guess:{who}", limit * GUESS_SPREAD),  # every client at this address
    ]


def check_guesses(ctx: Context, who: str) -> None:
    """Refuse before checking a secret once too many checks failed: for who from
    this client, from this client at all, or for who from everywhere."""
    window = ctx.api.window_seconds
    for key, limit in _guess_counters(ctx, who):
        if ctx.state.count(key, window) >= limit:
            raise ApiError(
                429,
                f"too many failed attempts; wait up to {int(window)} s before trying again",
                retry_after=window,
            )


def failed_guess(ctx: Context, who: str) -> None:
    for key, _ in _guess_counters(ctx, who):
        ctx.state.bump(key, ctx.api.window_seconds)


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


# -- accounts ----------------------------------------------------------------


def create_account(ctx: Context, email: str, password: str) -> dict[str, Any]:
    if len(password) < MIN_PASSWORD:
        raise ApiError(400, f"password: use at least {MIN_PASSWORD} characters")
    found = ctx.state.account(email)
    if found is not None:
        account, stored = found
        if account.status == state.VERIFIED:
            raise ApiError(409, f"an account for {email} exists already")
        # Only whoever chose the pending password may ask again, so nobody can
        # swap in a password of their own before the owner verifies.
        check_guesses(ctx, email)
        if not state.check_password(password, stored):
            failed_guess(ctx, email)
            raise ApiError(
                409,
                f"an account for {email} is waiting for verification; repeat the request with"
                " the same password to have the mail sent again, or wait until it expires",
            )
    else:
        ctx.state.put_pending_account(email, state.hash_password(password))
    lifetime = ctx.api.token_hours * 3600
    _guard_interval(ctx, email, "verify-account")
    issued = ctx.state.issue("verify", email, lifetime)
    url = link(ctx, "/accounts/verify", address=email, token=issued.token)
    send_mail(
        ctx,
        email,
        f"Verify your moderator account at {ctx.config.site.name}",
        f"Someone, probably you, asked for a moderator account for {email}.\n\n"
        f"To verify it, open\n\n  {url}\n\nand press the button, or give this token to the"
        f" API:\n\n  {issued.token}\n\nThe token is valid for"
        f" {lifetime_text(lifetime)}. If you did not ask, ignore this mail.\n",
        "verify-account",
    )
    return {"email": email, "status": state.PENDING}


def _guard_interval(ctx: Context, email: str, tag: str) -> None:
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


def verify_account(ctx: Context, email: str, token: str) -> dict[str, Any]:
    check_guesses(ctx, email)
    with ctx.state.transaction() as db:
        taken = ctx.state.take(db, "verify", email, token)
        if taken is not None:
            ctx.state.verify_account(db, email)
    if taken is None:
        failed_guess(ctx, email)
        raise ApiError(
            403, "wrong or expired token; ask for a new one by creating the account again"
        )
    found = ctx.state.account(email)
    if found is None:
        raise ApiError(404, f"no pending account for {email}; create it again")
    return {"email": email, "status": found[0].status}


def authenticate(ctx: Context) -> str:
    """The verified account named by HTTP Basic credentials."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        raise ApiError(401, "give the account's address and password with HTTP Basic auth")
    email = addresses.normalize(auth.username or "")
    if email is None:
        raise ApiError(401, "the Basic auth user name must be the account's email address")
    check_guesses(ctx, email)
    found = ctx.state.account(email)
    ok = state.check_password(auth.password or "", found[1] if found else _DUMMY_HASH)
    if found is None or not ok:
        failed_guess(ctx, email)
        raise ApiError(401, "wrong address or password")
    if found[0].status != state.VERIFIED:
        raise ApiError(403, f"the account {email} is not verified yet; use the token mailed to it")
    return email


def administrator(ctx: Context, mlist: MailingList) -> str | None:
    """The list's administrator: the account that created it, else its first moderator."""
    return ctx.state.list_administrator(mlist)


def require_administrator(ctx: Context, mlist: MailingList) -> str:
    who = authenticate(ctx)
    if who != administrator(ctx, mlist):
        raise ApiError(403, f"{who} is not the administrator of {mlist.name}")
    return who


# -- lists -------------------------------------------------------------------


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
    description = text_field(data, "description", MAX_DESCRIPTION, required=False)
    if any(ch < " " for ch in description):
        raise ApiError(400, "description: control characters are not allowed")
    posters = data.get("posters", "members")
    if posters not in POSTERS:
        raise ApiError(400, "posters: expected members, moderators or anyone")
    if addresses.normalize(f"{name}@{ctx.config.site.domain}") is None:
        raise ApiError(400, f"{name!r} cannot be the local part of an address; no '..'")
    if reserved := reserved_name(name):
        raise ApiError(400, f"{name!r} is reserved: {reserved}")
    if name in {addresses.split(ctx.config.site.admin)[0], notify.SENDER_LOCAL}:
        raise ApiError(409, f"{name!r} is already used by the site")
    try:
        with ctx.state.transaction() as db:
            listedit.add_list(ctx.settings.config_path, name, admin, description, str(posters))
            ctx.state.set_administrator(db, name, admin)
    except listedit.ListExists as exc:
        raise ApiError(409, f"a list named {name!r} exists already; choose another name") from exc
    except listedit.ListEditError as exc:
        log.warning("cannot add list %s: %s", name, exc)
        raise ApiError(409, f"the name {name!r} cannot be used: {_first_line(exc)}") from exc
    ctx.config = load(ctx.settings.config_path)
    return list_info(ctx, ctx.config.lists[name])


def _first_line(exc: Exception) -> str:
    text = str(exc)
    # A path would tell a client nothing it can act on.
    return text.split(": ", 1)[-1].splitlines()[-1][:200]


# -- subscriptions -----------------------------------------------------------


def subscribe(ctx: Context, mlist: MailingList, who: str) -> dict[str, Any]:
    """Mail who a confirmation token; members get one too, so the answer tells nothing."""
    _guard_interval(ctx, who, "subscribe")
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
    check_guesses(ctx, who)
    with ctx.state.transaction() as db:
        taken = ctx.state.take(db, "subscribe", who, token, mlist.name)
        if taken is not None:
            _edit_members(ctx, mlist, who, add=True)
    if taken is None:
        failed_guess(ctx, who)
        raise ApiError(403, "wrong or expired token; subscribe again for a new one")
    return {"list": mlist.name, "address": who, "status": "member"}


def request_unsubscribe(ctx: Context, mlist: MailingList, who: str) -> dict[str, Any]:
    """Mail a member a token that removes them; the answer is the same for non-members."""
    _protect_administrator(ctx, mlist, who)
    if who in mlist.members:
        _guard_interval(ctx, who, "unsubscribe")
        lifetime = ctx.api.token_hours * 3600
        issued = ctx.state.issue("unsubscribe", who, lifetime, mlist.name)
        url = link(ctx, f"/lists/{mlist.name}/unsubscribe", address=who, token=issued.token)
        send_mail(
            ctx,
            who,
            f"Confirm leaving {mlist.name}",
            f"Someone, probably you, asked to remove {who} from the list {mlist.name}.\n\n"
            f"To leave, open\n\n  {url}\n\nand press the button, or give this token to the"
            f" API:\n\n  {issued.token}\n\nIt is valid for {lifetime_text(lifetime)}."
            " If you want to stay, ignore this mail.\n",
            "unsubscribe",
        )
    return {"list": mlist.name, "address": who, "status": "pending"}


def unsubscribe(ctx: Context, mlist: MailingList, who: str, token: str) -> dict[str, Any]:
    """Remove who with a mailed token (list mail's own one-click links go to
    /unsubscribe/<list>, mailrecv.feedback)."""
    _protect_administrator(ctx, mlist, who)
    check_guesses(ctx, who)
    with ctx.state.transaction() as db:
        taken = ctx.state.take(db, "unsubscribe", who, token, mlist.name)
        if taken is not None:
            _edit_members(ctx, mlist, who, add=False)
    if taken is None:
        failed_guess(ctx, who)
        raise ApiError(403, "wrong or expired token; ask to unsubscribe again for a new one")
    return {"list": mlist.name, "address": who, "status": "removed"}


def remove_member(ctx: Context, mlist: MailingList, who: str) -> dict[str, Any]:
    require_administrator(ctx, mlist)
    _protect_administrator(ctx, mlist, who)
    if who not in mlist.members:
        raise ApiError(404, f"{who} is not a member of {mlist.name}")
    _edit_members(ctx, mlist, who, add=False)
    return {"list": mlist.name, "address": who, "status": "removed"}


def _protect_administrator(ctx: Context, mlist: MailingList, who: str) -> None:
    if who == administrator(ctx, mlist):
        raise ApiError(409, f"{who} administers {mlist.name} and cannot be unsubscribed")


def _edit_members(ctx: Context, mlist: MailingList, who: str, add: bool) -> None:
    path = ctx.settings.config_path
    try:
        if add:
            listedit.add_member(path, mlist.name, who)
        else:
            listedit.remove_member(path, mlist.name, who)
    except listedit.NoSuchList as exc:
        raise ApiError(404, f"no list named {mlist.name!r}") from exc
    except listedit.ListEditError as exc:
        log.error("cannot edit %s: %s", path, exc)
        raise ApiError(503, "the list cannot be changed right now; retry later") from exc


# -- posting -----------------------------------------------------------------


def post(ctx: Context, mlist: MailingList, data: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """With the administrator's credentials queue now; otherwise mail the author a token."""
    subject = text_field(data, "subject", MAX_SUBJECT)
    if any(ch < " " for ch in subject):
        raise ApiError(400, "subject: line breaks and control characters are not allowed")
    text = text_field(data, "body", ctx.api.max_request_bytes)
    if request.authorization is not None:
        admin = require_administrator(ctx, mlist)
        author = address(data.get("from", admin), "from")
        if author != admin:
            raise ApiError(403, f"with {admin}'s credentials you can post only as {admin}")
        return queue_post(ctx, mlist, author, subject, text, "administrator credentials"), 202
    author = address(data.get("from"), "from")
    _guard_interval(ctx, author, "post")
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
    check_guesses(ctx, who)
    with ctx.state.transaction() as db:
        payload = ctx.state.take(db, "post", who, token, mlist.name)
    if payload is None:
        failed_guess(ctx, who)
        raise ApiError(403, "wrong, used or expired token; post the message again")
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
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = author
    msg["To"] = list_address
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=site.domain)
    msg["X-Routemail-Posted-Via"] = f"{PREFIX}; authenticated by {how}"
    msg.set_content(text, charset="utf-8")
    verdicts = dict.fromkeys(VERDICT_NAMES, "PASS")
    try:
        receipt = ctx.settings.spool.ensure().receive(msg.as_bytes(), [list_address], verdicts)
    except SpoolError as exc:
        log.error("spool not writable: %s", exc)
        raise ApiError(503, "the message could not be queued; retry later") from exc
    if ctx.settings.on_receipt == "run":
        start_routemail(ctx.settings)
    return {"list": mlist.name, "from": author, "status": "queued", "id": receipt.id}


# -- routes ------------------------------------------------------------------


@blueprint.get("/openapi.json")
def openapi() -> Response:
    from mailrecv.openapi import document

    return jsonify(document())


@blueprint.post("/accounts")
def accounts_create() -> tuple[Response, int]:
    data = body()
    email = address(data.get("email"), "email")
    password = text_field(data, "password", MAX_PASSWORD)
    return jsonify(create_account(context(), email, password)), 202


@blueprint.post("/accounts/verify")
def accounts_verify() -> Response:
    data = body()
    email = address(data.get("email"), "email")
    return jsonify(verify_account(context(), email, token_field(data)))


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


# -- transactional mail -------------------------------------------------------


def require_send_key(ctx: Context) -> None:
    """The bearer key from the environment variable [api] send_key_env names."""
    expected = os.environ.get(ctx.api.send_key_env, "")
    if not expected:
        raise ApiError(503, f"sending is off: {ctx.api.send_key_env} is not set on the server")
    auth = request.headers.get("Authorization", "")
    scheme, _, given = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), expected.encode("utf-8")
    ):
        failed_guess(ctx, f"send-key:{ctx.client}")
        raise ApiError(
            401,
            "give the API key as Authorization: Bearer <key>",
            challenge='Bearer realm="routemail"',
        )


@blueprint.post("/send")
def send_create() -> tuple[Response, int]:
    ctx = context()
    # Counted per client only: a shared counter would let anyone lock every client out.
    check_guesses(ctx, f"send-key:{ctx.client}")
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
        text_field(data, "subject", MAX_SUBJECT),
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
