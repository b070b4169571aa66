"""The receiver's WSGI app: POST /mailrecv, /healthz and /metrics, the list API and its
pages, and the moderation pages (/moderate).

POST /mailrecv (mailrecv.receive) makes a signed message durable in the
spool; it never routes (routemail does that) and answers 200 only once the
message and its sidecar are on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from mailrecv import feedback, inbound, moderation, monitoring
from mailrecv.api import mount
from mailrecv.receive import MailrecvEndpoint
from mailrecv.settings import load_settings

log = logging.getLogger("mailrecv")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The WSGI app; config overrides settings (tests pass paths and a secret)."""
    settings = load_settings(config)
    app = Flask(__name__)
    app.config["ROUTEMAIL"] = settings
    mount.register(app)
    moderation.register(app)
    feedback.register(app, config)
    inbound.register(app)

    monitoring.register(app, settings)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        # The sender retries a 503, so an unforeseen failure loses nothing;
        # the traceback goes to the server log, never to the client.
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return jsonify(error="internal error; retry later"), 503

    app.wsgi_app = MailrecvEndpoint(settings, app.wsgi_app)  # type: ignore[method-assign]
    if settings.trusted_proxies:
        # Only then is X-Forwarded-For believed: the client address the logs and
        # the API's per-client limits see is the one these proxies report.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    return app
