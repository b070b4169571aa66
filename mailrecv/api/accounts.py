"""Moderator accounts: creation, verification and password reset by mailed token,
and authentication.

An account belongs to whoever reads its address's mail: the password is
chosen by the person who verifies the account with the mailed token (or
resets it with another), never by whoever asked for the account.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from mailrecv.api.confirmations import claim, deliver, lifetime_text, link
from mailrecv.api.context import PREFIX, ApiError, Context, blueprint, context
from mailrecv.api.fields import address, body, token_field
from mailrecv.api.limits import reserve_guess, right_guess
from routemail import addresses, passwords, state
from routemail.config import MailingList

MAX_PASSWORD = 1024
MIN_PASSWORD = 10
RESET_SECONDS = 3600.0  # a reset token lives this long at most (less if api.token_hours is)


def new_password(value: Any) -> str:
    """A password someone chose, checked for length."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, "password: choose a password (a non-empty string)")
    if len(value) < MIN_PASSWORD:
        raise ApiError(400, f"password: use at least {MIN_PASSWORD} characters")
    if len(value) > MAX_PASSWORD:
        raise ApiError(400, f"password: longer than {MAX_PASSWORD} characters")
    return value


def create_account(ctx: Context, email: str) -> dict[str, Any]:
    """Mail email a token with which its owner verifies the account and chooses its
    password; asking again mails another (within the mail limits)."""
    found = ctx.state.account(email)
    if found is not None and found[0].status == state.VERIFIED:
        raise ApiError(
            409,
            f"an account for {email} exists already; if its password is lost, ask for a"
            f" reset (POST {PREFIX}/accounts/password-reset)",
        )
    key = claim(ctx, email, "verify-account")
    ctx.state.put_pending_account(email)
    lifetime = ctx.api.token_hours * 3600
    issued = ctx.state.issue("verify", email, lifetime)
    url = link(ctx, "/accounts/verify", address=email, token=issued.token)
    deliver(
        ctx,
        key,
        email,
        f"Verify your moderator account at {ctx.config.site.name}",
        f"Someone, probably you, asked for a moderator account for {email}.\n\n"
        f"To verify it and choose its password, open\n\n  {url}\n\nor give this token and"
        f" your new password to the API:\n\n  {issued.token}\n\nThe token is valid for"
        f" {lifetime_text(lifetime)}. If you did not ask, ignore this mail: without it,"
        " nobody can use the account.\n",
    )
    return {"email": email, "status": state.PENDING}


def verify_account(ctx: Context, email: str, token: str, password: str) -> dict[str, Any]:
    """Verify a pending account with its mailed token; password becomes its password."""
    reservation = reserve_guess(ctx, email)
    hashed = passwords.hash_password(password)
    verified = False
    with ctx.state.transaction() as db:
        taken = ctx.state.take(db, "verify", email, token)
        if taken is not None:
            verified = ctx.state.verify_account(db, email, hashed)
    if taken is None:
        raise ApiError(
            403, "wrong or expired token; ask for a new one by creating the account again"
        )
    right_guess(ctx, reservation)
    if not verified:
        raise ApiError(404, f"no pending account for {email}; create it again")
    return {"email": email, "status": state.VERIFIED}


def request_reset(ctx: Context, email: str) -> dict[str, Any]:
    """Mail a verified account a password reset token. The answer, its limits
    included, is the same for every address, so it tells nobody who has an account."""
    key = claim(ctx, email, "password-reset")
    found = ctx.state.account(email)
    if found is not None and found[0].status == state.VERIFIED:
        lifetime = min(ctx.api.token_hours * 3600, RESET_SECONDS)
        issued = ctx.state.issue("reset", email, lifetime)
        url = link(ctx, "/accounts/reset", address=email, token=issued.token)
        deliver(
            ctx,
            key,
            email,
            f"Reset the password of your moderator account at {ctx.config.site.name}",
            f"Someone, probably you, asked to reset the password of the moderator account"
            f" {email}.\n\nTo choose a new password, open\n\n  {url}\n\nor give this token and"
            f" the new password to the API:\n\n  {issued.token}\n\nThe token is valid for"
            f" {lifetime_text(lifetime)} and works once. If you did not ask, ignore this"
            " mail: your password stays as it is.\n",
            quiet=True,
        )
    return {"email": email, "status": state.PENDING}


def reset_password(ctx: Context, email: str, token: str, password: str) -> dict[str, Any]:
    """Give a verified account a new password with a mailed reset token; the old
    password and every other reset token stop working."""
    reservation = reserve_guess(ctx, email)
    hashed = passwords.hash_password(password)
    changed = False
    with ctx.state.transaction() as db:
        taken = ctx.state.take(db, "reset", email, token)
        if taken is not None:
            changed = ctx.state.set_password(db, email, hashed)
    if taken is None or not changed:
        raise ApiError(403, "wrong, used or expired token; ask for a new password reset")
    right_guess(ctx, reservation)
    return {"email": email, "status": state.VERIFIED}


def authenticate(ctx: Context) -> str:
    """The verified account named by HTTP Basic credentials."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        raise ApiError(401, "give the account's address and password with HTTP Basic auth")
    email = addresses.normalize(auth.username or "")
    if email is None:
        raise ApiError(401, "the Basic auth user name must be the account's email address")
    reservation = reserve_guess(ctx, email)
    found = ctx.state.account(email)
    stored = found[1] if found and found[1] else passwords.UNMATCHABLE
    if found is None or not passwords.check_password(auth.password or "", stored):
        raise ApiError(401, "wrong address or password")
    right_guess(ctx, reservation)
    if found[0].status != state.VERIFIED:
        raise ApiError(403, f"the account {email} is not verified yet; use the token mailed to it")
    return email


def administrator(ctx: Context, mlist: MailingList) -> str | None:
    """The list's administrator: the account that created it, else its first moderator."""
    return ctx.state.list_administrator(mlist)


def require_administrator(ctx: Context, mlist: MailingList) -> str:
    who = authenticate(ctx)
    if not addresses.same(administrator(ctx, mlist) or "", who):
        raise ApiError(403, f"{who} is not the administrator of {mlist.name}")
    return who


@blueprint.post("/accounts")
def accounts_create() -> tuple[Response, int]:
    data = body()
    email = address(data.get("email"), "email")
    if "password" in data:
        raise ApiError(
            400,
            "password: the password is chosen when the account is verified, by whoever"
            f" received the mailed token (POST {PREFIX}/accounts/verify with the token and"
            " the password); ask without one",
        )
    return jsonify(create_account(context(), email)), 202


@blueprint.post("/accounts/verify")
def accounts_verify() -> Response:
    return jsonify(verify_account(context(), *_token_and_password()))


@blueprint.post("/accounts/password-reset")
def password_reset_create() -> tuple[Response, int]:
    email = address(body().get("email"), "email")
    return jsonify(request_reset(context(), email)), 202


@blueprint.post("/accounts/password-reset/confirm")
def password_reset_confirm() -> Response:
    return jsonify(reset_password(context(), *_token_and_password()))


def _token_and_password() -> tuple[str, str, str]:
    """The account's address, the mailed token and the new password from the body."""
    data = body()
    email, token = address(data.get("email"), "email"), token_field(data)
    return email, token, new_password(data.get("password"))
