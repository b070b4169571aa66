"""Re-post messages left in the bucket (a lost event, a receiver that was down)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mailxfer.events import SETUP_NOTIFICATION, Job
from mailxfer.transfer import NeedsPerson, SecretSource, TransferFailed, transfer

log = logging.getLogger("mailxfer")

DEFAULT_AGE = "10m"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_age(text: str) -> float:
    """Seconds in "90s", "10m", "2h", "1d" or a bare number of seconds."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age; write it like 90s, 10m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass
class SweepReport:
    delivered: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    needs_person: list[tuple[str, str]] = field(default_factory=list)
    too_young: int = 0
    stopped_early: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.needs_person

    def summary(self) -> str:
        text = (
            f"{len(self.delivered)} delivered ({len(self.duplicates)} already queued), "
            f"{len(self.failed)} failed, {len(self.needs_person)} need a person, "
            f"{self.too_young} younger than the cut-off"
        )
        return text + (", stopped before the end (time)" if self.stopped_early else "")


def sweep(
    s3: Any,
    bucket: str,
    prefix: str,
    older_than: float,
    url: str,
    secret: SecretSource,
    *,
    domains: Iterable[str] = (),
    now: dt.datetime | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> SweepReport:
    """Transfer every object under `prefix` older than `older_than` seconds.

    Recipients and verdicts come from the stored headers. A message the
    receiver already has answers as a duplicate and its object is deleted,
    so a sweep racing the Lambda still queues each message once.
    """
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=older_than)
    report = SweepReport()
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/") or key.rpartition("/")[2] == SETUP_NOTIFICATION:
                continue
            if obj["LastModified"] > cutoff:
                report.too_young += 1
                continue
            if not keep_going():
                report.stopped_early = True
                return report
            try:
                outcome = transfer(Job(bucket, key), s3, url, secret, domains=domains)
            except NeedsPerson as exc:
                report.needs_person.append((key, str(exc)))
                continue
            except TransferFailed as exc:
                report.failed.append((key, str(exc)))
                continue
            if outcome.already_gone:
                continue
            report.delivered.append(key)
            if outcome.duplicate:
                report.duplicates.append(key)
    log.info("sweep of s3://%s/%s: %s", bucket, prefix, report.summary())
    return report
