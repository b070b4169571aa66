"""What one request of the API or of the moderation pages works with: the settings,
lists.toml, the state database and the client's address, opened once per request.

Shared by mailrecv.api and mailrecv.moderation, which import nothing of each
other; each turns Unavailable into its own kind of answer (JSON or a page).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app, g, request

from mailrecv.settings import Settings
from routemail.config import Api, Config, load
from routemail.errors import ConfigError
from routemail.ratelimits import RateLimits
from routemail.spool import Spool
from routemail.state import State, StateError

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """lists.toml or the state database cannot be read now: what is wrong."""


@dataclass
class Context:
    """What one request works with."""

    settings: Settings
    config: Config
    state: State
    client: str

    @property
    def api(self) -> Api:
        return self.config.api

    @property
    def spool(self) -> Spool:
        return self.settings.spool

    @property
    def limits(self) -> RateLimits:
        return RateLimits(self.state)


def request_context() -> Context:
    """The request's context, opened on first use and closed when the request ends
    (close_context); Unavailable when lists.toml or the state database cannot be read."""
    ctx: Context | None = g.get("routemail_ctx")
    if ctx is not None:
        return ctx
    settings: Settings = current_app.config["ROUTEMAIL"]
    try:
        config = load(settings.config_path)
    except ConfigError as exc:
        log.error("lists.toml is invalid, the list API and pages are unavailable: %s", exc)
        raise Unavailable("the list configuration is invalid") from exc
    try:
        state = State.open(settings.data_dir, settings.clock)
    except StateError as exc:
        log.error("%s", exc)
        raise Unavailable("the state database is unavailable") from exc
    ctx = Context(settings, config, state, request.remote_addr or "unknown")
    g.routemail_ctx = ctx
    return ctx


def close_context(exc: BaseException | None) -> None:
    ctx: Context | None = g.pop("routemail_ctx", None)
    if ctx is not None:
        ctx.state.close()
