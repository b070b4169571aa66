"""Moderator accounts: creation, verification by mailed token, and authentication."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from mailrecv.api.confirmations import guard_interval, lifetime_text, link, send_mail
from mailrecv.api.context import ApiError, Context, blueprint, context
from mailrecv.api.fields import address, body, text_field, token_field
from mailrecv.api.limits import check_guesses, failed_guess
from routemail import addresses, state
from routemail.config import MailingList

MAX_PASSWORD = 1024
MIN_PASSWORD = 10
# A hash that no password matches: checked when the account does not exist,
# so a wrong address costs as much time as a wrong password.
_DUMMY_HASH = state.hash_password("no account has this password")


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
    guard_interval(ctx, email, "verify-account")
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
