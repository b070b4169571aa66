"""Small HTML pages behind the links in confirmation mails: one button each.

A GET only shows the page (mail scanners follow links); the button POSTs.
List mail's own one-click unsubscribe links (RFC 8058) are served by
mailrecv.feedback at /unsubscribe/<list>.
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

blueprint = Blueprint("pages", __name__, template_folder="templates")


@dataclass(frozen=True)
class Action:
    """One confirmable step: the page's words and what pressing the button does."""

    title: str
    question: str
    button: str
    done: str
    perform: Callable[[Context, MailingList | None, str, str], Any]


ACCOUNT = Action(
    "Verify your account",
    "Verify the moderator account {address}?",
    "Verify account",
    "The account {address} is verified. You can now create lists with it.",
    lambda ctx, mlist, who, token: accounts.verify_account(ctx, who, token),
)
SUBSCRIBE = Action(
    "Confirm subscription",
    "Subscribe {address} to the list {list}?",
    "Confirm subscription",
    "{address} is now subscribed to {list}.",
    lambda ctx, mlist, who, token: members.confirm_subscription(ctx, _known(mlist), who, token),
)
UNSUBSCRIBE = Action(
    "Leave the list",
    "Remove {address} from the list {list}?",
    "Unsubscribe",
    "{address} has been removed from {list}.",
    lambda ctx, mlist, who, token: members.unsubscribe(ctx, _known(mlist), who, token),
)
POST = Action(
    "Send your message",
    "Send the message from {address} to the list {list}?",
    "Send message",
    "Your message to {list} is on its way (the list's posting rules still apply).",
    lambda ctx, mlist, who, token: posting.confirm_post(ctx, _known(mlist), who, token),
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
    if request.method == "GET":
        return _render(
            "confirm.html",
            200,
            title=action.title,
            question=action.question.format(**words),
            button=action.button,
            action=request.path,
            address=who,
            token=token,
        )
    action.perform(ctx, mlist, who, token)
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
