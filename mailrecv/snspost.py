"""An SNS message POSTed to the receiver, believed only once it verifies.

/ses-events and /ses-inbound take SNS deliveries alike: a JSON object of
bounded size, whose signature verifies (routemail/sns.py: certificate host,
validity period, signature) for a topic the site allows, and whose signed
Timestamp is recent. A SubscriptionConfirmation that verifies is confirmed
by fetching its SubscribeURL, which must itself be https on an SNS host.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, jsonify, request

from mailrecv.receive import Rejected
from routemail.sns import SnsError, Verifier, check_fresh, check_sns_url

log = logging.getLogger("mailrecv.sns")


@dataclass(frozen=True)
class Trust:
    """What an endpoint believes: its topics and age limit, and the settings naming them."""

    topics: frozenset[str]
    topics_setting: str
    max_age_hours: float
    age_setting: str


def verifier() -> Verifier:
    verifier: Verifier = current_app.extensions["routemail.sns"]
    return verifier


def read(limit: int) -> dict[str, Any]:
    """The posted JSON object, reading at most limit bytes of it."""
    if (request.content_length or 0) > limit:
        raise Rejected(413, "too large for an SNS message")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise Rejected(413, "too large for an SNS message")
    try:
        return json_object(data)
    except ValueError:
        raise Rejected(400, "expected an SNS message (JSON)") from None


def json_object(text: str | bytes) -> dict[str, Any]:
    """The JSON object text holds; ValueError for anything else."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def verify(message: Mapping[str, Any], trust: Trust, endpoint: str) -> None:
    """Rejected (403) unless the message is genuine, from an allowed topic and recent."""
    try:
        verifier().verify(message, trust.topics, trust.topics_setting)
        now = current_app.config["ROUTEMAIL"].clock()
        check_fresh(message, trust.max_age_hours * 3600, now, trust.age_setting)
    except SnsError as exc:
        log.warning(
            "%s: refused %s from %s: %s", endpoint, message.get("Type"), request.remote_addr, exc
        )
        raise Rejected(403, f"not a verified SNS message: {exc}") from None


def confirm_subscription(message: Mapping[str, Any], endpoint: str) -> tuple[Response, int]:
    """Confirm a verified SubscriptionConfirmation; 503 (SNS sends it again) on failure."""
    url = str(message.get("SubscribeURL", ""))
    try:
        check_sns_url(url)
        verifier().fetch(url)
    except (SnsError, OSError) as exc:
        topic = message.get("TopicArn")
        log.error("%s: cannot confirm subscription to %s: %s", endpoint, topic, exc)
        return jsonify(error="cannot confirm the subscription; retry later"), 503
    log.info("%s: confirmed subscription to %s", endpoint, message.get("TopicArn"))
    return jsonify(confirmed=True), 200
