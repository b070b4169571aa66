"""Signed-in sessions of the moderation pages, kept in data/state.sqlite3.

A session is a row of the tokens table (purpose "web-session"): the browser
holds the random token, the database only its hash, so a copy of the database
opens no session. Each session has its own CSRF token. A session ends when it
has been idle for idle_seconds, when it is max_seconds old, when its holder
signs out, or when the account's password changes (State.set_password).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from routemail.state import State, token_hash

PURPOSE = "web-session"
IDLE_SECONDS = 30 * 60.0
MAX_SECONDS = 12 * 3600.0


@dataclass(frozen=True)
class WebSession:
    """A live session: whose it is and the CSRF token its forms carry."""

    email: str
    csrf: str
    expires: float

    def csrf_matches(self, given: str | None) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.csrf.encode())


def start(state: State, email: str, idle_seconds: float = IDLE_SECONDS) -> tuple[str, WebSession]:
    """A new session for email: the token for the cookie, and the session."""
    csrf = secrets.token_urlsafe(24)
    issued = state.issue(PURPOSE, email, idle_seconds, payload=csrf)
    return issued.token, WebSession(email, csrf, issued.expires)


def find(
    state: State,
    token: str | None,
    idle_seconds: float = IDLE_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> WebSession | None:
    """The live session of token, its idle time restarted; None when there is none."""
    if not token:
        return None
    now = state.clock()
    with state.transaction() as db:
        row = db.execute(
            "SELECT id, email, payload, created FROM tokens"
            " WHERE purpose = ? AND hash = ? AND expires > ?",
            (PURPOSE, token_hash(token), now),
        ).fetchone()
        if row is None:
            return None
        row_id, email, csrf, created = row
        expires = min(now + idle_seconds, created + max_seconds)
        if expires <= now:
            db.execute("DELETE FROM tokens WHERE id = ?", (row_id,))
            return None
        db.execute("UPDATE tokens SET expires = ? WHERE id = ?", (expires, row_id))
    return WebSession(email, csrf, expires)


def end(state: State, token: str | None) -> None:
    """Sign the session of token out (nothing when there is none)."""
    if token:
        with state.transaction() as db:
            db.execute(
                "DELETE FROM tokens WHERE purpose = ? AND hash = ?", (PURPOSE, token_hash(token))
            )
