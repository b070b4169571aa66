"""Adds the API, its OpenAPI document and the pages for people to the receiver's app."""

from __future__ import annotations

from flask import Flask, Response, jsonify

from mailrecv import pages
from mailrecv.api import accounts, lists, members, messages, moderation, owner, posting, send
from mailrecv.api.context import blueprint
from mailrecv.openapi import document
from mailrecv.requestcontext import close_context

# Imported for the routes they add to the blueprint.
ROUTES = (accounts, lists, members, messages, moderation, owner, posting, send)


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())


def register(app: Flask) -> None:
    """Add the API and the pages for people to the receiver's app."""
    app.register_blueprint(blueprint)
    app.register_blueprint(pages.blueprint)
    app.teardown_appcontext(close_context)
