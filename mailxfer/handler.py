"""The Lambda entry point `mailxfer.handler`: SES, S3 and SNS events in, signed posts out."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from mailxfer.events import jobs_from_event
from mailxfer.secrets import shared_secret
from mailxfer.sweep import DEFAULT_AGE, parse_age, sweep
from mailxfer.transfer import NeedsPerson, TransferFailed, transfer

log = logging.getLogger("mailxfer")

# A scheduled sweep stops taking new objects when less than this is left.
SWEEP_MARGIN_MS = 30_000


class ConfigError(RuntimeError):
    """The function's environment lacks a setting; the message names it."""


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Transfer the message(s) an event names; raise unless every one got a 2xx.

    An event `{"sweep": {"older_than": "10m"}}` (the template's schedule)
    sweeps MAILXFER_BUCKET/MAILXFER_PREFIX instead.
    """
    logging.getLogger("mailxfer").setLevel(logging.INFO)
    env = os.environ
    url = env.get("MAILRECV_URL", "")
    if not url:
        raise ConfigError("MAILRECV_URL is not set: the receiver's https://.../mailrecv URL")
    domains = [d for d in env.get("MAILXFER_DOMAINS", "").split(",") if d.strip()]

    def secret(refresh: bool) -> bytes:
        return shared_secret(env, refresh=refresh)

    import boto3  # lazily, so importing the package (as mailrecv does) stays cheap

    s3 = boto3.client("s3")
    if isinstance(event.get("sweep"), dict):
        return _sweep(event["sweep"], s3, url, secret, domains, env, context)
    delivered: list[str] = []
    failures: list[TransferFailed] = []
    for job in jobs_from_event(event, env):
        try:
            outcome = transfer(job, s3, url, secret, domains=domains)
        except TransferFailed as exc:
            # Keep going: the other records' objects are independent.
            failures.append(exc)
            continue
        if outcome.id:
            delivered.append(outcome.id)
    if failures:
        text = "; ".join(str(f) for f in failures)
        if all(isinstance(f, NeedsPerson) for f in failures):
            raise NeedsPerson(text)
        raise TransferFailed(text)
    # CONTINUE lets later rule actions run when SES invokes synchronously.
    return {"disposition": "CONTINUE", "delivered": delivered}


def _sweep(
    spec: Mapping[str, Any],
    s3: Any,
    url: str,
    secret: Any,
    domains: list[str],
    env: Mapping[str, str],
    context: Any,
) -> dict[str, Any]:
    bucket = str(spec.get("bucket") or env.get("MAILXFER_BUCKET", ""))
    if not bucket:
        raise ConfigError("a sweep needs MAILXFER_BUCKET (or a bucket in the event)")
    prefix = str(spec.get("prefix", env.get("MAILXFER_PREFIX", "")))
    age = parse_age(str(spec.get("older_than", DEFAULT_AGE)))

    def keep_going() -> bool:
        if context is None:
            return True
        return int(context.get_remaining_time_in_millis()) > SWEEP_MARGIN_MS

    report = sweep(s3, bucket, prefix, age, url, secret, domains=domains, keep_going=keep_going)
    if not report.ok:
        problems = [*report.needs_person, *report.failed]
        raise TransferFailed(
            f"sweep of s3://{bucket}/{prefix}: {report.summary()}; first: {problems[0][1]}"
        )
    return {"delivered": report.delivered, "summary": report.summary()}
