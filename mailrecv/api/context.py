"""The API's blueprint, its errors, and the context one request works with."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from mailrecv.settings import Settings
from routemail.config import Config, load
from routemail.errors import ConfigError
from routemail.ratelimits import RateLimits
from routemail.state import State, StateError

PREFIX = "/api/v1"

log = logging.getLogger(__name__)
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

    @property
    def limits(self) -> RateLimits:
        return RateLimits(self.state)


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


def close_state(exc: BaseException | None) -> None:
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
