"""Webhooks: signed JSON events to configured URLs, persisted until delivered.

Each event for each URL is a file in data/webhooks/pending/, written
atomically before anything is attempted, so a restart loses none. Delivery
signs `timestamp + "." + body` with HMAC-SHA256; a failure is retried with
exponential backoff and jitter until max_age_hours, then moved to failed/.
Receivers deduplicate on the event id should a crash repeat a delivery.

The events of a message's life (docs/deliverability.md lists each with its
JSON) are emitted through `message`, `decision` and `copy`, so every event of
a kind carries the same fields whoever emits it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import random
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routemail.atomic import fsync_dir
from routemail.config import Webhooks
from routemail.errors import RoutemailError, UnknownMessage
from routemail.message import Headers

if TYPE_CHECKING:
    from routemail.spool import Spool

MAX_RETRY_SECONDS = 3600.0
TIMEOUT_SECONDS = 10.0
SIGNATURE_HEADER = "X-Routemail-Signature"
TIMESTAMP_HEADER = "X-Routemail-Timestamp"
EVENT_HEADER = "X-Routemail-Event"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Pending:
    """One event waiting for one URL."""

    path: Path
    url: str
    event: str
    body: str
    created: float
    attempts: int
    next_at: float
    last_error: str


class Outbox:
    """data/webhooks: pending/ and failed/ event files."""

    def __init__(self, data_dir: Path, settings: Webhooks) -> None:
        self.root = data_dir / "webhooks"
        self.pending_dir = self.root / "pending"
        self.failed_dir = self.root / "failed"
        self.settings = settings
        self._unsynced: list[Path] = []

    def wants(self, event: str) -> bool:
        return bool(self.settings.urls) and event in self.settings.events

    def message(self, event: str, msg_id: str, headers: Headers, **fields: Any) -> None:
        """An event of a whole message: its queue id, Message-ID, author and subject."""
        self.emit(
            event,
            message=msg_id,
            message_id=headers.message_id,
            sender=headers.author.address,
            subject=headers.subject,
            **fields,
        )

    def decision(
        self, event: str, spool: Spool, msg_id: str, listname: str, by: str | None, via: str
    ) -> None:
        """approved, rejected or expired: who decided (None for an expiry) and how
        (mail, shell, api, web, expiry)."""
        if not self.wants(event):
            return
        try:
            head = spool.read_message(msg_id)[: 1 << 20]
        except UnknownMessage:
            head = b""
        self.message(event, msg_id, Headers.of(head), list=listname, by=by, via=via)

    def copy(
        self,
        event: str,
        msg_id: str | None,
        address: str,
        listname: str | None,
        detail: str,
        **fields: Any,
    ) -> None:
        """An event of one recipient's copy. Written without fsync, as the S lines
        they mirror are: a killed process loses none; flush() makes them durable."""
        self.emit(
            event,
            sync=False,
            message=msg_id,
            address=address,
            list=listname,
            detail=detail,
            **fields,
        )

    def flush(self) -> None:
        """fsync what copy() wrote (the first fsync commits them all) and the directory."""
        written, self._unsynced = self._unsynced, []
        for path in written:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # already delivered
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if written:
            fsync_dir(self.pending_dir)

    def emit(self, event: str, *, sync: bool = True, **fields: Any) -> None:
        """Persist an event for every configured URL that wants it."""
        if not self.wants(event):
            return
        now = time.time()
        body = json.dumps(
            {"id": secrets.token_hex(16), "type": event, "time": int(now), **fields},
            sort_keys=True,
            default=str,
        )
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        for url in self.settings.urls:
            record = {
                "url": url,
                "event": event,
                "body": body,
                "created": now,
                "attempts": 0,
                "next_at": now,
                "last_error": "",
            }
            path = self.pending_dir / f"{time.time_ns()}-{secrets.token_hex(4)}.json"
            self._write(path, record, sync=sync)
            if not sync:
                self._unsynced.append(path)

    def pending(self) -> list[Pending]:
        return sorted(self._read_dir(self.pending_dir), key=lambda p: p.path.name)

    def failed(self) -> list[Pending]:
        return sorted(self._read_dir(self.failed_dir), key=lambda p: p.path.name)

    def deliver_due(self, now: float | None = None) -> tuple[int, int]:
        """Attempt every event that is due; (delivered, still pending)."""
        secret = self._secret()
        delivered = 0
        left = 0
        for item in self.pending():
            now_ = now or time.time()
            if item.next_at > now_:
                left += 1
                continue
            error = post(item.url, item.event, item.body.encode(), secret)
            if error is None:
                with contextlib.suppress(FileNotFoundError):
                    item.path.unlink()
                delivered += 1
            elif now_ - item.created >= self.settings.max_age_hours * 3600:
                self._give_up(item, error)
            else:
                self._reschedule(item, error, now_)
                left += 1
        return delivered, left

    def _secret(self) -> bytes:
        value = os.environ.get(self.settings.secret_env, "")
        if not value:
            raise RoutemailError(
                f"webhooks are configured but {self.settings.secret_env} is not set; "
                "export the signing secret your webhook receivers share"
            )
        return value.encode("utf-8")

    def _reschedule(self, item: Pending, error: str, now: float) -> None:
        attempts = item.attempts + 1
        first = self.settings.first_retry_seconds
        delay = min(MAX_RETRY_SECONDS, first * 2 ** (attempts - 1))
        delay *= random.uniform(0.8, 1.2)  # jitter spreads retries to a recovering receiver
        self._write(
            item.path, self._record(item, attempts=attempts, next_at=now + delay, last_error=error)
        )

    def _give_up(self, item: Pending, error: str) -> None:
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        record = self._record(item, attempts=item.attempts + 1, last_error=error)
        self._write(self.failed_dir / item.path.name, record)
        with contextlib.suppress(FileNotFoundError):
            item.path.unlink()

    @staticmethod
    def _record(item: Pending, **changes: Any) -> dict[str, Any]:
        record = {
            "url": item.url,
            "event": item.event,
            "body": item.body,
            "created": item.created,
            "attempts": item.attempts,
            "next_at": item.next_at,
            "last_error": item.last_error,
        }
        record.update(changes)
        return record

    @staticmethod
    def _write(path: Path, record: Mapping[str, Any], sync: bool = True) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)

    @staticmethod
    def _read_dir(directory: Path) -> Iterator[Pending]:
        if not directory.exists():
            return
        for path in directory.glob("*.json"):
            try:
                r = json.loads(path.read_text("utf-8"))
                yield Pending(
                    path,
                    r["url"],
                    r["event"],
                    r["body"],
                    float(r["created"]),
                    int(r["attempts"]),
                    float(r["next_at"]),
                    str(r["last_error"]),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a torn temporary write; the previous version stands


def post(url: str, event: str, body: bytes, secret: bytes) -> str | None:
    """POST one event; None on a 2xx, else what went wrong."""
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(secret, timestamp, body),
            EVENT_HEADER: event,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read(1024)
            return None
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))
