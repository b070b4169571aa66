"""Feedback endpoints: SES events over SNS, and RFC 8058 one-click unsubscribe.

POST /ses-events believes nothing before the SNS signature verifies for an
allowed topic and the signed Timestamp is recent; anything else gets 403 and
a log line. Each notification (by its signed MessageId) is applied once. /unsubscribe/<list>
carries an HMAC token over (list, address) that every copy's List-Unsubscribe
header holds: a POST of List-Unsubscribe=One-Click unsubscribes at once, a
GET only shows a page whose button POSTs the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request

from mailrecv import snspost
from mailrecv.receive import Rejected
from routemail import addresses, tokens
from routemail.config import Config, load
from routemail.errors import ConfigError, RoutemailError
from routemail.feedback import Feedback, ReportTooEarly
from routemail.sns import FUTURE_SKEW_SECONDS, Verifier, fetch_certificate
from routemail.state import State

log = logging.getLogger("mailrecv.feedback")
blueprint = Blueprint("feedback", __name__, template_folder="templates")
ONE_CLICK = "One-Click"
MAX_SNS_BYTES = 256 * 1024


def register(app: Flask, overrides: Mapping[str, Any] | None = None) -> None:
    """Tests hand in `sns_fetch` (certificate and SubscribeURL GETs); the host
    rule for certificate URLs applies all the same."""
    fetch = (overrides or {}).get("sns_fetch") or fetch_certificate
    app.extensions["routemail.sns"] = Verifier(fetch)
    app.register_blueprint(blueprint)


def _config() -> Config:
    return load(current_app.config["ROUTEMAIL"].config_path)


def _feedback(config: Config) -> Feedback:
    settings = current_app.config["ROUTEMAIL"]
    return Feedback(config, settings.spool, State.open(settings.data_dir))


@blueprint.post("/ses-events")
def ses_events() -> tuple[Response, int]:
    try:
        message = snspost.read(MAX_SNS_BYTES)
    except Rejected as exc:
        return jsonify(error=exc.message), exc.status
    try:
        config = _config()
    except ConfigError as exc:
        log.error("ses-events: lists.toml is broken, SNS will retry: %s", exc.problems[0])
        return jsonify(error="configuration error; retry later"), 503
    trust = snspost.Trust(
        config.bounces.sns_topics,
        "[bounces] sns_topics",
        config.bounces.sns_max_age_hours,
        "[bounces] sns_max_age_hours",
    )
    try:
        snspost.verify(message, trust, "ses-events")
    except Rejected as exc:
        return jsonify(error=exc.message), exc.status
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        return snspost.confirm_subscription(message, "ses-events")
    if kind != "Notification":
        log.info("ses-events: %s for %s", kind, message.get("TopicArn"))
        return jsonify(ok=True), 200
    try:
        event = snspost.json_object(message["Message"])
    except ValueError:
        return jsonify(error="the SNS Message is not an SES event"), 400
    max_age = config.bounces.sns_max_age_hours * 3600
    return _apply_once(config, message["MessageId"], event, max_age + FUTURE_SKEW_SECONDS)


def _apply_once(
    config: Config, message_id: str, event: Mapping[str, Any], keep_seconds: float
) -> tuple[Response, int]:
    """Apply a notification unless its MessageId was applied before (a replay, or SNS
    delivering twice); the id is kept as long as a copy could still pass check_fresh."""
    feedback = _feedback(config)
    try:
        if not feedback.state.first_sight(message_id, keep_seconds):
            log.info("ses-events: %s was applied already; ignored", message_id)
            return jsonify(actions=[], duplicate=True), 200
        try:
            applied = feedback.ses_event(event, f"sns:{message_id}")
        except ReportTooEarly as exc:
            feedback.state.forget_sight(message_id)
            log.info("ses-events: %s; SNS will retry", exc)
            return jsonify(error=f"{exc}; retry later"), 503
        except BaseException:
            feedback.state.forget_sight(message_id)  # SNS retries after the 503
            raise
    finally:
        feedback.state.close()
    for action in applied.actions + applied.timeline:
        log.info("ses-events: %s", action)
    return jsonify(actions=applied.actions, timeline=applied.timeline), 200


@blueprint.route("/unsubscribe/<listname>", methods=["GET", "POST"])
def one_click(listname: str) -> tuple[str, int]:
    settings = current_app.config["ROUTEMAIL"]
    address = addresses.normalize(request.args.get("a", "")) or ""
    given = request.args.get("t", "")
    listname = listname.lower()
    issued = _issued(request.args.get("i"))
    secret = tokens.load_secret(settings.data_dir)
    try:
        config: Config | None = _config()
    except ConfigError:
        config = None
    site = config.site.name if config else ""
    if not address or issued is False:
        return _page("Link not valid", "This unsubscribe link is not valid.", site, 400)
    expected = tokens.unsubscribe_token(secret, listname, address, issued)
    if not tokens.matches(expected, given):
        return _page("Link not valid", "This unsubscribe link is not valid.", site, 400)
    if config is None:
        return _page("Try again later", "The list service is being configured.", site, 503)
    if request.method == "GET":
        return render_template(
            "unsubscribe.html",
            title="Leave the list",
            site=site,
            action=request.full_path,
            question=f"Stop receiving {listname} mail at {address}?",
        ), 200
    if request.form.get("List-Unsubscribe") != ONE_CLICK:
        return _page("Not understood", "Expected List-Unsubscribe=One-Click.", site, 400)
    title, message, status = _unsubscribe(config, listname, address, issued or 0)
    return _page(title, message, site, status)


def _issued(value: str | None) -> int | Literal[False] | None:
    """When the link's copy was made: None for links from before copies said so, False
    for a value that is not a time."""
    if value is None:
        return None
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 12 else False


def _unsubscribe(config: Config, listname: str, address: str, issued: int) -> tuple[str, str, int]:
    """Remove a named list's member, suppress a dynamic list's recipient for that list:
    the page's title, words and status."""
    feedback = _feedback(config)
    try:
        mlist = config.lists.get(listname)
        administrator = feedback.state.list_administrator(mlist) if mlist else None
        if administrator is not None and addresses.same(administrator, address):
            return (
                "Still subscribed",
                f"{address} administers {listname}, so it stays subscribed: the list's"
                " administrator cannot leave it.",
                409,
            )
        rejoined = feedback.state.membership_changed_at(listname, address)
        if issued < rejoined and (mlist is None or addresses.contains(mlist.members, address)):
            return (
                "Link out of date",
                f"This link is from a message sent before {address} last joined or left"
                f" {listname}, so it no longer unsubscribes. Use the link in a newer message.",
                400,
            )
        feedback.unsubscribe(address, listname, "one-click")
    except RoutemailError as exc:
        log.error("one-click unsubscribe of %s from %s failed: %s", address, listname, exc)
        return "Try again later", f"{address} could not be unsubscribed just now.", 503
    finally:
        feedback.state.close()
    return "Unsubscribed", f"{address} will no longer receive mail from {listname}.", 200


def _page(title: str, message: str, site: str, status: int) -> tuple[str, int]:
    return render_template(
        "done.html", title=title, message=message, site=site, error=status >= 400
    ), status
