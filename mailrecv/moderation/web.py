"""The moderation pages' blueprint: the request's context, the signed-in moderator,
CSRF checks, and the headers every page carries.

Every page forbids every load from elsewhere and every script
(Content-Security-Policy), framing, caching and the Referer header: a held
message's preview is sanitised (routemail.safehtml), and these headers make
sure that even a sanitiser's mistake would load and run nothing.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, g, make_response, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mailrecv.requestcontext import Context, Unavailable, request_context
from routemail import addresses, held, websessions
from routemail.lists import Directory, ResolvedList, ResolverError
from routemail.ratelimits import Reservation, guess_limits
from routemail.websessions import WebSession

PREFIX = "/moderate"
SESSION_COOKIE = "routemail_session"
SIGNIN_COOKIE = "routemail_signin"  # the sign-in and reset forms' CSRF value, before a session
MAX_FORM_BYTES = 64 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'none'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}

log = logging.getLogger(__name__)
blueprint = Blueprint(
    "moderate",
    __name__,
    url_prefix=PREFIX,
    template_folder="../templates",
    static_folder="static",
    static_url_path="/static",
)


class Refused(Exception):
    """A page that says what went wrong and what to do, with its status."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def context() -> Context:
    """The request's context (mailrecv.requestcontext), or a page saying to come back."""
    try:
        return request_context()
    except Unavailable as exc:
        raise Refused(503, f"{str(exc).capitalize()}; try again later.") from exc


# -- the signed-in moderator -------------------------------------------------


def session() -> WebSession | None:
    """The live session the request's cookie names, if any."""
    if "moderation_session" not in g:
        g.moderation_session = websessions.find(
            context().state, request.cookies.get(SESSION_COOKIE)
        )
    found: WebSession | None = g.moderation_session
    return found


def signed_in() -> WebSession:
    """The session, or a redirect to the sign-in page (and back here after it)."""
    found = session()
    if found is None:
        raise SignInFirst()
    if request.method == "POST" and not found.csrf_matches(request.form.get("csrf")):
        raise Refused(
            403, "This form is out of date or did not come from this site. Reload the page."
        )
    return found


class SignInFirst(Exception):
    """No live session: the page redirects to sign in."""


def guess(ctx: Context, who: str) -> Reservation:
    """Count a password check for who before making it (the API's counters, so neither
    way in gives a fresh allowance), or refuse with 429 when too many failed."""
    window = ctx.api.window_seconds
    limits = guess_limits(who, ctx.client, ctx.api.guess_limit)
    reservation = ctx.limits.reserve(limits, window)
    if reservation is None:
        raise Refused(
            429,
            f"Too many failed attempts. Wait up to {int(window / 60)} minutes and try again.",
            retry_after=window,
        )
    return reservation


def form_token() -> str:
    """The CSRF value of the forms shown before signing in (double-submit: a cookie
    and the same value in the form), set on the response by render."""
    if "signin_token" not in g:
        g.signin_token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)
    token: str = g.signin_token
    return token


def check_form_token() -> None:
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    given = request.form.get("csrf", "")
    if not cookie or not secrets.compare_digest(cookie.encode(), given.encode()):
        raise Refused(403, "This form is out of date or did not come from this site. Reload it.")


# -- lists -------------------------------------------------------------------


def moderated_list(ctx: Context, name: str, who: str) -> ResolvedList:
    """The list called name when who moderates (or administers) it; 404 when there is
    no such list, 403 when who is not among its moderators."""
    try:
        found = Directory(ctx.config).resolve(name)
    except ResolverError as exc:
        log.error("list %s cannot be resolved: %s", name, exc)
        raise Refused(503, f"The list {name} cannot be looked up now; try again later.") from exc
    if found is None:
        raise Refused(404, f"There is no list called {name[:80]}.")
    if not may_moderate(ctx, found, who):
        raise Refused(403, f"{who} is not a moderator of {found.name}.")
    return found


def may_moderate(ctx: Context, mlist: ResolvedList, who: str) -> bool:
    named = ctx.config.lists.get(mlist.name)
    admin = ctx.state.list_administrator(named) if named else None
    return held.may_moderate(ctx.config, admin, mlist, who)


def owns(ctx: Context, name: str, who: str) -> bool:
    """Whether who owns the named list (lists.toml's, not a dynamic one): the account
    that created it, else its first moderator."""
    mlist = ctx.config.lists.get(name)
    return mlist is not None and addresses.same(ctx.state.list_administrator(mlist) or "", who)


# -- answers -----------------------------------------------------------------


def render(template: str, status: int = 200, **values: Any) -> Response:
    found = g.get("moderation_session")
    response = make_response(
        render_template(
            f"moderate/{template}",
            site=_site_name(),
            me=found.email if found else None,
            csrf=found.csrf if found else "",
            **values,
        ),
        status,
    )
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    if "signin_token" in g:
        set_cookie(response, SIGNIN_COOKIE, g.signin_token)
    return response


def set_cookie(response: Response, name: str, value: str) -> None:
    """A cookie only this site's pages see: never to scripts, only over HTTPS (browsers
    treat loopback as secure), not with other sites' requests except plain links."""
    response.set_cookie(name, value, path=PREFIX, secure=True, httponly=True, samesite="Lax")


def redirect(path: str) -> Response:
    response = make_response("", 303)
    response.headers["Location"] = path
    return response


def _site_name() -> str:
    ctx: Context | None = g.get("routemail_ctx")
    return ctx.config.site.name if ctx is not None else "Mailing lists"


@blueprint.before_request
def _limit_size() -> None:
    request.max_content_length = MAX_FORM_BYTES


def with_headers(response: Response) -> Response:
    """The strict headers on every answer under PREFIX: the app's own errors too
    (an unknown path, a wrong method), which no blueprint handler sees."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        response.headers.update(SECURITY_HEADERS)
    return response


@blueprint.route("/<path:unknown>", methods=["GET", "POST"])
def _unknown(unknown: str) -> Response:
    raise Refused(404, "There is no such page. Start from your lists.")


@blueprint.errorhandler(SignInFirst)
def _sign_in_first(exc: SignInFirst) -> Response:
    back = request.full_path if request.method == "GET" else f"{PREFIX}/"
    return redirect(f"{PREFIX}/signin?{urlencode({'next': back.rstrip('?')})}")


@blueprint.errorhandler(Refused)
def _refused(exc: Refused) -> Response:
    response = render("message.html", exc.status, title="Sorry", message=exc.message, error=True)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(int(exc.retry_after))
    return response


@blueprint.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Response:
    return _refused(Refused(413, f"The form is larger than {MAX_FORM_BYTES} bytes."))


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return _refused(Refused(exc.code or 500, exc.description or exc.name))


@blueprint.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    # The traceback goes to the server log, never to the page.
    log.exception("unexpected error handling %s %s", request.method, request.path)
    return _refused(Refused(503, "Something went wrong on our side; try again later."))


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of these pages only, never another site."""
    if (
        value
        and value.startswith(PREFIX + "/")
        and not any(bad in value for bad in ("//", "\\", "..", "\r", "\n"))
    ):
        return value
    return f"{PREFIX}/"
