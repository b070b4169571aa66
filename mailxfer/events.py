"""The shapes SES inbound mail arrives in, reduced to the S3 objects to transfer."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from mailxfer.signing import VERDICT_NAMES

# S3 writes this object when an SES S3 action is first saved; it is not mail.
SETUP_NOTIFICATION = "AMAZON_SES_SETUP_NOTIFICATION"
_VERDICT_KEYS = {name: f"{name}Verdict" for name in VERDICT_NAMES}


class EventError(ValueError):
    """An event this handler cannot read; the message says which part and why."""


@dataclass(frozen=True)
class Job:
    """One stored message to transfer, with whatever the event said about it.

    `recipients` and `verdicts` are None or partial when the event did not
    carry them; the stored message's headers fill the gaps. `message_id` is
    SES's id when the key was made from it and MAILXFER_PREFIX (a Lambda-action
    event): then a missing object may be one stored under another prefix.
    """

    bucket: str
    key: str
    recipients: tuple[str, ...] | None = None
    verdicts: Mapping[str, str] | None = None
    content: bytes | None = None
    message_id: str | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.bucket else f"(inline) {self.key}"


def jobs_from_event(event: Mapping[str, Any], env: Mapping[str, str] | None = None) -> list[Job]:
    """Every message an SES Lambda-action, S3 or SNS event refers to."""
    env = os.environ if env is None else env
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        raise EventError("event has no Records list: not an SES, S3 or SNS event")
    jobs: list[Job] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise EventError(f"Records[{index}] is not an object")
        source = record.get("eventSource") or record.get("EventSource")
        if source == "aws:ses":
            jobs.append(_from_lambda_action(record.get("ses"), env, index))
        elif source == "aws:s3":
            jobs.extend(_from_s3(record, index))
        elif source == "aws:sns":
            jobs.extend(_from_sns(record.get("Sns"), env, index))
        else:
            raise EventError(f"Records[{index}]: unknown eventSource {source!r}")
    return jobs


def _verdicts(receipt: Mapping[str, Any]) -> dict[str, str]:
    found = {}
    for name, key in _VERDICT_KEYS.items():
        value = receipt.get(key)
        if isinstance(value, dict) and isinstance(value.get("status"), str):
            found[name] = value["status"].upper()
    return found


def _recipients(receipt: Mapping[str, Any]) -> tuple[str, ...] | None:
    # receipt.recipients are the addresses this rule matched; mail.destination
    # also names the ones other rules (or other domains) own.
    value = receipt.get("recipients")
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(v.strip().lower() for v in value)
    return None


def _from_lambda_action(ses: Any, env: Mapping[str, str], index: int) -> Job:
    if not isinstance(ses, dict):
        raise EventError(f"Records[{index}].ses is missing")
    mail = ses.get("mail") or {}
    receipt = ses.get("receipt") or {}
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise EventError(f"Records[{index}].ses.mail.messageId is missing")
    bucket = env.get("MAILXFER_BUCKET", "")
    if not bucket:
        raise EventError(
            "an SES Lambda-action event names no object: set MAILXFER_BUCKET (and "
            "MAILXFER_PREFIX) to the receipt rule's S3 action bucket and prefix"
        )
    return Job(
        bucket=bucket,
        key=env.get("MAILXFER_PREFIX", "") + message_id,
        recipients=_recipients(receipt),
        verdicts=_verdicts(receipt),
        message_id=message_id,
    )


def _from_s3(record: Mapping[str, Any], index: int) -> list[Job]:
    name = str(record.get("eventName", ""))
    if not name.startswith("ObjectCreated"):
        return []
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    key = (s3.get("object") or {}).get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise EventError(f"Records[{index}].s3 lacks bucket.name or object.key")
    key = unquote_plus(key)
    if key.rpartition("/")[2] == SETUP_NOTIFICATION:
        return []
    return [Job(bucket=bucket, key=key)]


def _from_sns(sns: Any, env: Mapping[str, str], index: int) -> list[Job]:
    if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
        raise EventError(f"Records[{index}].Sns.Message is missing")
    try:
        message = json.loads(sns["Message"])
    except ValueError as exc:
        raise EventError(f"Records[{index}].Sns.Message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise EventError(f"Records[{index}].Sns.Message is not a JSON object")
    if "Records" in message:
        # S3 event notifications fanned out through a topic.
        return jobs_from_event(message, env)
    if message.get("Event") == "s3:TestEvent":
        return []
    return [receipt_notification(message, f"Records[{index}]")]


def receipt_notification(message: Mapping[str, Any], where: str) -> Job:
    """The message an SES receipt notification (SNS action, or S3 action with a topic)
    carries or names; EventError, naming where, for anything else or a malformed one."""
    kind = message.get("notificationType") or message.get("eventType")
    if kind != "Received":
        raise EventError(f"{where}: SNS notification of type {str(kind)[:40]!r}, not 'Received'")
    receipt = message.get("receipt")
    action = receipt.get("action") if isinstance(receipt, dict) else None
    if not isinstance(receipt, dict) or not isinstance(action, dict):
        raise EventError(f"{where}: the SES notification has no receipt.action")
    recipients = _recipients(receipt)
    verdicts = _verdicts(receipt)
    if action.get("type") == "S3":
        bucket, key = action.get("bucketName"), action.get("objectKey")
        if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
            raise EventError(f"{where}: S3 action lacks bucketName or objectKey")
        return Job(bucket, key, recipients, verdicts)
    content = message.get("content")
    if action.get("type") == "SNS" and isinstance(content, str):
        # An SNS action with the message inline (SES allows up to 150 KB).
        message_id = (message.get("mail") or {}).get("messageId")
        name = message_id if isinstance(message_id, str) and message_id else "sns"
        body = _decode_content(content, action.get("encoding"), where)
        return Job("", name, recipients, verdicts, content=body)
    raise EventError(
        f"{where}: SES notification has neither an S3 action nor an SNS action with the content"
    )


def _decode_content(content: str, encoding: Any, where: str) -> bytes:
    """The inline message's bytes: base64 (line breaks allowed, nothing else) or UTF-8."""
    name = str(encoding or "UTF8").upper().replace("-", "")
    try:
        if name == "BASE64":
            return base64.b64decode("".join(content.split()), validate=True)
        if name == "UTF8":
            return content.encode("utf-8")
    except (ValueError, UnicodeError) as exc:
        problem = f"{where}: the content is not {encoding} as its action says: {exc}"
        raise EventError(problem) from None
    raise EventError(f"{where}: unknown content encoding {str(encoding)[:40]!r}")
