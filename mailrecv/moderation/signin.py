"""Signing in and out of the moderation pages, and asking for a password reset link.

The password is the moderator account's (the API's, routemail.state); the
reset link is the account's mailed reset token, opened on /accounts/reset.
Failed sign-ins count against the same limits as the API's failed passwords.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, request

from mailrecv.moderation.web import (
    PREFIX,
    SESSION_COOKIE,
    Context,
    Refused,
    blueprint,
    check_form_token,
    context,
    form_token,
    guess,
    redirect,
    render,
    safe_next,
    session,
    set_cookie,
    signed_in,
)
from routemail import addresses, notify, passwords, state, websessions

RESET_SECONDS = 3600.0  # a mailed reset link works this long at most
MAX_PASSWORD = 1024


@blueprint.get("/")
def home() -> Response:
    return redirect(f"{PREFIX}/lists" if session() else f"{PREFIX}/signin")


@blueprint.route("/signin", methods=["GET", "POST"])
def sign_in() -> Response:
    ctx = context()
    after = safe_next(request.values.get("next"))
    if request.method == "GET":
        return _form(after)
    check_form_token()
    email = addresses.normalize(request.form.get("email", ""))
    password = request.form.get("password", "")
    if email is None or not password or len(password) > MAX_PASSWORD:
        return _form(after, "Give your account's email address and its password.", 400)
    if not _password_matches(ctx, email, password):
        return _form(after, "Wrong address or password.", 401, email)
    token, _ = websessions.start(ctx.state, email)
    ctx.state.purge(ctx.config.api.account_hours * 3600)  # expired sessions and tokens go
    response = redirect(after)
    set_cookie(response, SESSION_COOKIE, token)
    return response


def _password_matches(ctx: Context, email: str, password: str) -> bool:
    reservation = guess(ctx, email)
    found = ctx.state.account(email)
    verified = found is not None and found[0].status == state.VERIFIED and bool(found[1])
    stored = found[1] if found is not None and verified else passwords.UNMATCHABLE
    if not passwords.check_password(password, stored) or not verified:
        return False
    ctx.limits.refund(reservation)
    return True


def _form(after: str, error: str = "", status: int = 200, email: str = "") -> Response:
    return render(
        "signin.html",
        status,
        title="Sign in to moderate",
        error=error,
        email=email,
        next=after,
        form_csrf=form_token(),
    )


@blueprint.post("/signout")
def sign_out() -> Response:
    signed_in()  # checks the form's CSRF token: another site cannot sign anyone out
    websessions.end(context().state, request.cookies.get(SESSION_COOKIE))
    response = redirect(f"{PREFIX}/signin")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, secure=True, httponly=True, samesite="Lax")
    return response


@blueprint.route("/reset", methods=["GET", "POST"])
def reset() -> Response:
    """Ask for a password reset link. The answer is the same for every address, so it
    tells nobody who has an account."""
    ctx = context()
    if request.method == "GET":
        return render("reset.html", title="Forgot your password?", form_csrf=form_token())
    check_form_token()
    email = addresses.normalize(request.form.get("email", ""))
    if email is None:
        return render(
            "reset.html",
            400,
            title="Forgot your password?",
            form_csrf=form_token(),
            error="Give the email address of your moderator account.",
        )
    _mail_reset_link(ctx, email)
    return render(
        "message.html",
        title="Check your mail",
        message=f"If {email} has a moderator account, a link to choose a new password is on"
        " its way. It works once, for an hour.",
    )


def _mail_reset_link(ctx: Context, email: str) -> None:
    """Mail a verified account a reset link, within the API's limits on such mails
    (one per address per interval, a number per client), counted for every address."""
    api = ctx.config.api
    if ctx.limits.count(f"mail-client:{ctx.client}", api.window_seconds) >= api.mails_per_client:
        raise Refused(429, "Too many mails were asked for from here; try again later.")
    ctx.limits.bump(f"mail-client:{ctx.client}", api.window_seconds)
    found = ctx.state.account(email)
    key = f"password-reset:{addresses.key(email)}"  # the API's: one allowance for both
    if found is None or found[0].status != state.VERIFIED:
        return
    if ctx.limits.claim_mail(key, api.mail_interval_seconds):
        return  # one was mailed a moment ago: that link still works
    lifetime = min(api.token_hours * 3600, RESET_SECONDS)
    issued = ctx.state.issue("reset", found[0].email, lifetime)
    query = urlencode({"address": found[0].email, "token": issued.token})
    url = f"{ctx.config.site.base_url}/accounts/reset?{query}"
    result = notify.send(
        ctx.config,
        ctx.spool,
        found[0].email,
        f"Reset the password of your moderator account at {ctx.config.site.name}",
        f"Someone, probably you, asked on the moderation pages to reset the password of"
        f" the moderator account {found[0].email}.\n\nTo choose a new password, open\n\n"
        f"  {url}\n\nThe link works once, for {int(lifetime / 60)} minutes. If you did not"
        " ask, ignore this mail: your password stays as it is.\n",
        "password-reset",
    )
    if not result.sent:
        ctx.limits.release_mail(key)
