"""The moderation web pages at /moderate: moderators see and decide on held messages,
list owners manage members and settings. Server-rendered, no JavaScript."""

from __future__ import annotations

from flask import Flask

from mailrecv.moderation import owner, review, signin
from mailrecv.moderation.web import blueprint, with_headers

# Imported for the routes they add to the blueprint.
ROUTES = (owner, review, signin)


def register(app: Flask) -> None:
    app.register_blueprint(blueprint)
    app.after_request(with_headers)
