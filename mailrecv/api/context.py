"""The API's blueprint, its errors, and the context one request works with
(mailrecv.requestcontext)."""

from __future__ import annotations

import math

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from mailrecv.requestcontext import Context, Unavailable, request_context
from mailrecv.settings import Settings
from routemail.config import load
from routemail.errors import ConfigError

PREFIX = "/api/v1"

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


def context() -> Context:
    """The request's context, opened on first use (config, state database)."""
    fresh = "routemail_ctx" not in g
    try:
        ctx = request_context()
    except Unavailable as exc:
        raise ApiError(503, f"{exc}; retry later") from exc
    if fresh and request.method == "POST":
        ctx.state.purge(ctx.config.api.account_hours * 3600)
    return ctx


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
