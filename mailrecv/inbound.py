"""POST /ses-inbound: SES receipt notifications over SNS become queue entries, no Lambda.

A receipt rule publishes each message to an SNS topic either inline (an SNS
action: the message in the notification's `content`, up to 150 KB) or after
storing it in S3 (an S3 action with a topic: the object in `receipt.action`).
The notification is believed only once it verifies as on /ses-events
(mailrecv/snspost.py) for a topic in [receiver.ses_inbound] sns_topics. A
stored message is read with the receiver's own AWS credentials, only from
the configured bucket and prefix. Either way the message enters the queue as
a POST to /mailrecv does (mailrecv.receive.store: durable first, the same
duplicate handling, the receipt's recipients and verdicts), and only then is
the object deleted.

SNS retries an answer of 5xx and never a 4xx, so what may succeed later
(S3 or the spool unavailable, lists.toml broken, the object not deleted)
answers 503, and what never will (forged, malformed, not allowed) 4xx. An
object is never deleted unless its message is queued, so nothing refused or
failed is lost: `mailxfer sweep` delivers what is left in the bucket.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from mailrecv import snspost
from mailrecv.monitoring import SES_INBOUND_POSTS, count_post
from mailrecv.receive import Readable, Rejected, Stored, normalize_recipients, start_routemail
from mailrecv.receive import store as store_message
from mailrecv.settings import Settings, ses_inbound
from mailxfer.events import EventError, Job, receipt_notification
from mailxfer.transfer import get_object
from routemail.config import VERDICT_NAMES, VERDICT_VALUES, SesInbound
from routemail.errors import ConfigError

log = logging.getLogger("mailrecv.inbound")
blueprint = Blueprint("inbound", __name__)
ENDPOINT = "ses-inbound"
# SES publishes messages of up to 150 KB inline; the notification around one, its
# content escaped in JSON twice over, stays well within this.
MAX_POST_BYTES = 1 << 20
INLINE_LIMIT = 150 * 1024
UNKNOWN_VERDICT = "DISABLED"  # a verdict the receipt lacks is never a pass
S3_ATTEMPTS = 2  # SNS waits 15 s for an answer; a 503 in time beats a timeout


def register(app: Flask) -> None:
    app.register_blueprint(blueprint)


@blueprint.after_request
def _count(response: Response) -> Response:
    count_post(response.status_code, SES_INBOUND_POSTS)
    return response


@blueprint.post("/ses-inbound")
def ses_inbound_post() -> tuple[Response, int]:
    settings: Settings = current_app.config["ROUTEMAIL"]
    try:
        message = snspost.read(MAX_POST_BYTES)
        inbound = _settings(settings)
        snspost.verify(message, _trust(inbound), ENDPOINT)
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            return snspost.confirm_subscription(message, ENDPOINT)
        if kind != "Notification":
            log.info("%s: %s for %s", ENDPOINT, kind, message.get("TopicArn"))
            return jsonify(ok=True), 200
        arrival = _arrival(message)
        if arrival.job.bucket:
            return _from_s3(settings, inbound, arrival)
        stream = io.BytesIO(arrival.job.content or b"")
        return _answer(settings, arrival.job, _store(settings, arrival, stream))
    except Rejected as exc:
        if exc.status < 500 and exc.status != 403:  # 403s and 5xx are logged where raised
            log.info(
                "%s: refused a post from %s: %d %s",
                ENDPOINT,
                request.remote_addr,
                exc.status,
                exc.message,
            )
        return jsonify(error=exc.message), exc.status


def _settings(settings: Settings) -> SesInbound:
    try:
        return ses_inbound(settings.config_path)
    except ConfigError as exc:
        log.error("%s: [receiver] in lists.toml is not valid, SNS will retry: %s", ENDPOINT, exc)
        raise Rejected(503, "configuration error; retry later") from None


def _trust(inbound: SesInbound) -> snspost.Trust:
    return snspost.Trust(
        inbound.sns_topics,
        "[receiver.ses_inbound] sns_topics",
        inbound.sns_max_age_hours,
        "[receiver.ses_inbound] sns_max_age_hours",
    )


@dataclass(frozen=True)
class Arrival:
    """The message a notification carries or names, and its receipt's envelope."""

    job: Job
    recipients: list[str]
    verdicts: dict[str, str]


def _arrival(message: Mapping[str, Any]) -> Arrival:
    """What the notification says, all checked before S3 or the spool is touched."""
    job = _job(message)
    return Arrival(job, *_recipients_and_verdicts(job))


def _job(message: Mapping[str, Any]) -> Job:
    """The message the notification carries or names; 400 for anything else."""
    try:
        notification = snspost.json_object(message["Message"])
        job = receipt_notification(notification, "the SES notification")
    except (ValueError, EventError) as exc:
        raise Rejected(400, str(exc)) from None
    if job.content is not None and len(job.content) > INLINE_LIMIT:
        raise Rejected(
            413,
            f"an inline message of {len(job.content)} bytes: SES publishes at most"
            f" {INLINE_LIMIT} bytes with an SNS action",
        )
    return job


def _recipients_and_verdicts(job: Job) -> tuple[list[str], dict[str, str]]:
    if not job.recipients:
        raise Rejected(400, "the SES notification has no receipt.recipients")
    recipients = normalize_recipients(job.recipients, "receipt.recipients")
    found = dict(job.verdicts or {})
    for name, value in found.items():
        if value not in VERDICT_VALUES:
            raise Rejected(400, f"receipt.{name}Verdict: {value[:40]!r} is not a verdict")
    return recipients, {n: found.get(n, UNKNOWN_VERDICT) for n in VERDICT_NAMES}


def _store(settings: Settings, arrival: Arrival, stream: Readable) -> Stored:
    where, limit = arrival.job.where, settings.max_size
    too_big = Rejected(413, f"{where} exceeds [receiver] max_size ({limit} bytes)")
    return store_message(settings, stream, arrival.recipients, arrival.verdicts, (limit, too_big))


def _answer(
    settings: Settings, job: Job, stored: Stored, status: int = 200, error: str = ""
) -> tuple[Response, int]:
    receipt = stored.receipt
    log.info(
        "%s: queued %s from %s%s",
        ENDPOINT,
        receipt.id,
        job.where,
        " (duplicate)" if receipt.duplicate else "",
    )
    if settings.on_receipt == "run":
        start_routemail(settings)
    answer = {"id": receipt.id, "duplicate": receipt.duplicate, "sha256": stored.sha256}
    if error:
        answer["error"] = error
    return jsonify(answer), status


def _from_s3(settings: Settings, inbound: SesInbound, arrival: Arrival) -> tuple[Response, int]:
    """Queue the stored message, then delete its object."""
    job = arrival.job
    if not inbound.bucket or job.bucket != inbound.bucket or not job.key.startswith(inbound.prefix):
        allowed = f"s3://{inbound.bucket}/{inbound.prefix}" if inbound.bucket else "none set"
        log.error(
            "%s: %s is not under [receiver.ses_inbound] bucket and prefix (%s), so it stays"
            " there; if the receipt rule is yours, set them to its S3 action's bucket and"
            " prefix, then `mailxfer sweep --bucket %s` delivers what is stored",
            ENDPOINT,
            job.where,
            allowed,
            job.bucket,
        )
        raise Rejected(403, f"{job.where} is outside the bucket and prefix allowed")
    s3 = _client(inbound.region, inbound.endpoint_url, inbound.timeout)
    body = _open(s3, job, settings.max_size)
    if body is None:
        # SNS may deliver a notification twice; the first delivery queued and deleted it.
        log.warning("%s: %s is gone: queued and deleted already", ENDPOINT, job.where)
        return jsonify(gone=True), 200
    with body:
        stored = _store(settings, arrival, _S3Stream(body, job))
    try:
        s3.delete_object(Bucket=job.bucket, Key=job.key)
    except Exception as exc:
        log.error("%s: %s queued but not deleted, SNS will retry: %s", ENDPOINT, job.where, exc)
        # Queued already: the retry is a duplicate, then deletes.
        return _answer(settings, job, stored, 503, f"{job.where} not deleted; retry later")
    return _answer(settings, job, stored)


@functools.lru_cache(maxsize=4)
def _client(region: str | None, endpoint_url: str | None, timeout: float) -> Any:
    import boto3  # lazily: a receiver taking no inbound notifications never loads it
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": S3_ATTEMPTS, "mode": "standard"},
    )
    return boto3.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def _open(s3: Any, job: Job, max_size: int) -> Any:
    """The object's streaming body, or None when it no longer exists."""
    try:
        response = get_object(s3, job.bucket, job.key)
    except Exception as exc:
        log.error("%s: cannot read %s, SNS will retry: %s", ENDPOINT, job.where, exc)
        raise Rejected(503, f"cannot read {job.where}; retry later") from None
    if response is None:
        return None
    size = response.get("ContentLength")
    if isinstance(size, int) and size > max_size:
        response["Body"].close()
        log.error(
            "%s: %s is %d bytes, over [receiver] max_size; it stays there: raise max_size,"
            " then run `mailxfer sweep --bucket %s`",
            ENDPOINT,
            job.where,
            size,
            job.bucket,
        )
        raise Rejected(413, f"{job.where} exceeds [receiver] max_size ({max_size} bytes)")
    return response["Body"]


class _S3Stream:
    """An object's body, whose read failures (S3 went away mid-message) answer 503."""

    def __init__(self, body: Any, job: Job) -> None:
        self.body = body
        self.job = job

    def read(self, size: int, /) -> bytes:
        try:
            return bytes(self.body.read(size))
        except Exception as exc:
            log.error("%s: reading %s failed, SNS will retry: %s", ENDPOINT, self.job.where, exc)
            raise Rejected(503, f"cannot read {self.job.where}; retry later") from None
