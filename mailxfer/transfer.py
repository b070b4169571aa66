"""Move one stored message from S3 to the receiver: spool, sign, post, then delete."""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from mailxfer.events import Job
from mailxfer.headers import (
    parse_headers,
    read_header_block,
    recipients_from_headers,
    verdicts_from_headers,
)
from mailxfer.post import NotAReceipt, PostResult, Receipt, error_text, post_message, receipt_of

log = logging.getLogger("mailxfer")

# The body's digest is signed, so the body is read once before posting; kept in
# memory up to this size, on local disk (Lambda's /tmp) beyond it.
MEMORY_CAP = 8 * 1024 * 1024
CHUNK = 1 << 16
# Where a Lambda-action event's object is missing, this many keys of the bucket
# are searched for it under another prefix (mailxfer deletes what it delivers,
# so an inbound bucket holds little).
SEARCH_KEYS = 10_000

SecretSource = Callable[[bool], bytes]


class TransferFailed(RuntimeError):
    """The message was not delivered and is still where it was; retrying may help."""


class NeedsPerson(TransferFailed):
    """The message was not delivered and retrying will not help until someone acts."""


@dataclass(frozen=True)
class Outcome:
    where: str
    id: str | None
    duplicate: bool = False
    already_gone: bool = False


def transfer(
    job: Job,
    s3: Any,
    url: str,
    secret: SecretSource,
    *,
    domains: Iterable[str] = (),
    timeout: float = 60.0,
) -> Outcome:
    """Deliver `job` to the receiver at `url`; delete its object only after a receipt.

    Raises NeedsPerson for a refused signature (401), a message over the
    receiver's limit (413), a 200 that is not a receipt for this body, or a
    message with no recipient to route on; TransferFailed for anything else.
    """
    body = _open(job, s3)
    if body is None:
        _check_not_misplaced(job, s3)
        # Lambda may deliver an event twice; the first run delivered and deleted it.
        log.warning("%s is gone: already transferred", job.where)
        return Outcome(job.where, None, already_gone=True)
    with body:
        head = parse_headers(read_header_block(body))
        recipients = list(job.recipients or recipients_from_headers(head, domains))
        verdicts = {**verdicts_from_headers(head), **(job.verdicts or {})}
        if not recipients:
            raise _needs_person(
                job,
                "no envelope recipient in the event or the stored headers; post it by hand "
                "with `mailxfer post --to ADDRESS` and delete the object",
            )
        used = secret(False)
        result = _post(url, used, body, recipients, verdicts, timeout, job)
        if result.status == 401:
            # A rotated secret reaches a warm Lambda only when it asks again.
            fresh = secret(True)
            if fresh != used:
                body.seek(0)
                result = _post(url, fresh, body, recipients, verdicts, timeout, job)
    if result.status == 200:
        return _delete_after(job, s3, _proven(job, url, result), recipients)
    reason = f"{url} answered {result.status}: {error_text(result)}"
    if result.status == 401:
        raise _needs_person(
            job, f"{reason}; the shared secret differs from the receiver's MAILRECV_SECRET"
        )
    if result.status == 413:
        raise _needs_person(job, f"{reason}; raise the receiver's [receiver] max_size")
    log.warning("%s not delivered, will be retried: %s", job.where, reason)
    raise TransferFailed(f"{job.where} not delivered: {reason}")


def _check_not_misplaced(job: Job, s3: Any) -> None:
    """NeedsPerson when a Lambda-action event's message is stored under a prefix
    other than MAILXFER_PREFIX: then nothing was transferred, and the object stays."""
    if not job.message_id:
        return
    found = _key_ending(s3, job.bucket, job.message_id)
    if found is None:
        return
    prefix = job.key[: -len(job.message_id)]
    actual = found[: -len(job.message_id)]
    raise _needs_person(
        job,
        f"the message is stored as s3://{job.bucket}/{found}, not under MAILXFER_PREFIX "
        f"{prefix!r}; set MAILXFER_PREFIX to the S3 action's object key prefix {actual!r}, "
        f"then `mailxfer sweep --bucket {job.bucket} --prefix {actual}` delivers what is stored",
    )


def _key_ending(s3: Any, bucket: str, suffix: str) -> str | None:
    """A key of the bucket (among its first SEARCH_KEYS) that ends with suffix."""
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"MaxItems": SEARCH_KEYS}
        )
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"].endswith(suffix):
                    return str(item["Key"])
    except Exception as exc:
        raise TransferFailed(
            f"s3://{bucket}/...{suffix} is missing; cannot search: {exc}"
        ) from None
    return None


def _proven(job: Job, url: str, result: PostResult) -> Receipt:
    """The receipt in a 200, or NeedsPerson: a 200 that proves nothing is a wrong URL
    or something between us and the receiver, and the object must stay."""
    try:
        return receipt_of(result)
    except NotAReceipt as exc:
        raise _needs_person(
            job, f"{url} {exc}; check that MAILRECV_URL is the receiver's /mailrecv URL"
        ) from None


def _delete_after(job: Job, s3: Any, receipt: Receipt, recipients: list[str]) -> Outcome:
    if job.bucket:
        try:
            s3.delete_object(Bucket=job.bucket, Key=job.key)
        except Exception as exc:
            # Queued already; a retry or sweep posts a duplicate, then deletes.
            raise TransferFailed(
                f"{job.where} delivered as {receipt.id} but not deleted: {exc}"
            ) from None
    log.info(
        "%s delivered as %s%s to %s",
        job.where,
        receipt.id,
        " (duplicate)" if receipt.duplicate else "",
        ",".join(recipients),
    )
    return Outcome(job.where, receipt.id, receipt.duplicate)


def _needs_person(job: Job, reason: str) -> NeedsPerson:
    text = f"{job.where} not delivered and retrying will not help: {reason}"
    log.error("NEEDS A PERSON: %s", text)
    return NeedsPerson(text)


def _post(
    url: str,
    secret: bytes,
    body: BinaryIO,
    recipients: list[str],
    verdicts: dict[str, str],
    timeout: float,
    job: Job,
) -> PostResult:
    try:
        return post_message(url, secret, body, recipients, verdicts, timeout=timeout)
    except OSError as exc:
        log.warning("%s not delivered, will be retried: cannot reach %s: %s", job.where, url, exc)
        raise TransferFailed(f"{job.where} not delivered: cannot reach {url}: {exc}") from None


def get_object(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """S3's answer to GetObject (its Body still to be read), or None when the object does
    not exist (any more); anything else that goes wrong raises."""
    try:
        return dict(s3.get_object(Bucket=bucket, Key=key))
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404"):
            return None
        raise


def _open(job: Job, s3: Any) -> BinaryIO | None:
    """The message as a seekable stream, or None when the object no longer exists."""
    if job.content is not None:
        return io.BytesIO(job.content)
    try:
        response = get_object(s3, job.bucket, job.key)
    except Exception as exc:
        raise TransferFailed(f"cannot read {job.where}: {exc}") from None
    if response is None:
        return None
    spool: Any = tempfile.SpooledTemporaryFile(max_size=MEMORY_CAP)  # noqa: SIM115
    stream = response["Body"]
    try:
        while chunk := stream.read(CHUNK):
            spool.write(chunk)
    except Exception as exc:
        spool.close()
        raise TransferFailed(f"cannot read {job.where}: {exc}") from None
    finally:
        stream.close()
    spool.seek(0)
    return spool
