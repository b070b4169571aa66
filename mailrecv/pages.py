"""Small HTML pages behind the links in confirmation mails: one button each.

A GET only shows the page (mail scanners follow links); the button POSTs,
and only from this site's own page (a browser's Sec-Fetch-Site says so).
The account pages ask the person who holds the mailed token for the
account's password. List mail's own one-click unsubscribe links (RFC 8058)
are served by mailrecv.feedback at /unsubscribe/<list>.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, make_response, render_template, request
from werkzeug.exceptions import HTTPException

from mailrecv.api import accounts, members, posting
from mailrecv.api.context import ApiError, Context, context
from mailrecv.api.fields import address, existing_list
from routemail.config import MailingList, load
from routemail.errors import ConfigError

MAX_FORM_BYTES = 64 * 1024
# Sec-Fetch-Site values of a form sent from our own page, or typed in (no header: not a
# browser, which forged requests from other sites always come from).
OWN_SITE = ("same-origin", "none")

blueprint = Blueprint("pages", __name__, template_folder="templates")


@dataclass(frozen=True)
class Confirmation:
    """What the button's POST carries."""

    ctx: Context
    mlist: MailingList | None
    who: str
    token: str
    password: str


@dataclass(frozen=True)
class Action:
    """One confirmable step: the page's words and what pressing the button does."""

    title: str
    question: str
    button: str
    done: str
    perform: Callable[[Confirmation], Any]
    asks_password: bool = False


ACCOUNT = Action(
    "Verify your account",
    "Verify the moderator account {address} and choose its password.",
    "Verify account",
    "The account {address} is verified. You can now create lists with it.",
    lambda c: accounts.verify_account(c.ctx, c.who, c.token, c.password),
    asks_password=True,
)
RESET = Action(
    "Choose a new password",
    "Choose a new password for the moderator account {address}.",
    "Set password",
    "The password of {address} is changed; the old one no longer works.",
    lambda c: accounts.reset_password(c.ctx, c.who, c.token, c.password),
    asks_password=True,
)
SUBSCRIBE = Action(
    "Confirm subscription",
    "Subscribe {address} to the list {list}?",
    "Confirm subscription",
    "{address} is now subscribed to {list}.",
    lambda c: members.confirm_subscription(c.ctx, _known(c.mlist), c.who, c.token),
)
UNSUBSCRIBE = Action(
    "Leave the list",
    "Remove {address} from the list {list}?",
    "Unsubscribe",
    "{address} has been removed from {list}.",
    lambda c: members.unsubscribe(c.ctx, _known(c.mlist), c.who, c.token),
)
POST = Action(
    "Send your message",
    "Send the message from {address} to the list {list}?",
    "Send message",
    "Your message to {list} is on its way (the list's posting rules still apply).",
    lambda c: posting.confirm_post(c.ctx, _known(c.mlist), c.who, c.token),
)


def _known(mlist: MailingList | None) -> MailingList:
    assert mlist is not None
    return mlist


@blueprint.before_request
def _limit_size() -> None:
    request.max_content_length = MAX_FORM_BYTES


@blueprint.after_request
def _private(response: Response) -> Response:
    # The URL carries a token: keep it out of caches and other sites' logs.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


@blueprint.route("/accounts/verify", methods=["GET", "POST"])
def verify_account() -> Response:
    return _page(ACCOUNT, None)


@blueprint.route("/accounts/reset", methods=["GET", "POST"])
def reset_password() -> Response:
    return _page(RESET, None)


@blueprint.route("/lists/<name>/confirm", methods=["GET", "POST"])
def confirm_subscription(name: str) -> Response:
    return _page(SUBSCRIBE, name)


@blueprint.route("/lists/<name>/unsubscribe", methods=["GET", "POST"])
def unsubscribe(name: str) -> Response:
    return _page(UNSUBSCRIBE, name)


@blueprint.route("/lists/<name>/post", methods=["GET", "POST"])
def confirm_post(name: str) -> Response:
    return _page(POST, name)


def _page(action: Action, name: str | None) -> Response:
    raw_address = request.form.get("address") or request.args.get("address") or ""
    token = request.form.get("token") or request.args.get("token") or ""
    if not raw_address or not token:
        raise ApiError(400, "This link is incomplete. Copy the whole link from the mail.")
    who = address(raw_address)
    ctx = context()
    mlist = existing_list(ctx, name) if name is not None else None
    words = {"address": who, "list": mlist.name if mlist else ""}

    def form(status: int, error: str = "") -> Response:
        return _render(
            "confirm.html",
            status,
            title=action.title,
            question=action.question.format(**words),
            button=action.button,
            action=request.path,
            address=who,
            token=token,
            password=action.asks_password,
            min_password=accounts.MIN_PASSWORD,
            max_password=accounts.MAX_PASSWORD,
            error=error,
        )

    if request.method == "GET":
        return form(200)
    if request.headers.get("Sec-Fetch-Site", "none") not in OWN_SITE:
        raise ApiError(403, "This form only works from its own page. Open the link in the mail.")
    password = ""
    if action.asks_password:
        try:
            password = accounts.new_password(request.form.get("password"))
        except ApiError as exc:
            return form(exc.status, exc.message.removeprefix("password: ").capitalize() + ".")
    action.perform(Confirmation(ctx, mlist, who, token, password))
    return _render("done.html", 200, title=action.title, message=action.done.format(**words))


def _render(template: str, status: int, **values: Any) -> Response:
    response = make_response(render_template(template, site=_site_name(), **values), status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def _site_name() -> str:
    try:
        return load(current_app.config["ROUTEMAIL"].config_path).site.name
    except ConfigError:
        return "Mailing lists"


@blueprint.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    response = _render("done.html", exc.status, title="Sorry", message=exc.message, error=True)
    response.headers.update({k: v for k, v in exc.headers().items() if k != "WWW-Authenticate"})
    return response


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    message = exc.description or exc.name
    return _render("done.html", exc.code or 500, title="Sorry", message=message, error=True)
