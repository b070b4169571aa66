"""The receiver: POST /mailrecv makes a signed message durable in the spool.

It never routes (routemail does that); it answers 200 only once the message
and its sidecar are on disk, and then starts `routemail run` detached.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from mailxfer import signing
from routemail import addresses
from routemail.config import DEFAULT_MAX_SIZE, VERDICT_NAMES, VERDICT_VALUES
from routemail.errors import SpoolError
from routemail.spool import Incoming, Receipt, Spool

CHUNK = 1 << 16
log = logging.getLogger("mailrecv")


@dataclass(frozen=True)
class Settings:
    config_path: Path
    data_dir: Path
    secret: bytes | None
    on_receipt: str = "run"
    max_size: int = DEFAULT_MAX_SIZE
    clock: Callable[[], float] = time.time

    @property
    def spool(self) -> Spool:
        return Spool(self.data_dir / "maillist")


class Rejected(Exception):
    """A request answered with an error status and a JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment and lists.toml's [receiver] table.

    Only that table is read, leniently: a mistake elsewhere in lists.toml
    must never make the receiver refuse mail.
    """
    o = dict(overrides or {})
    config_path = Path(o.get("config_path") or os.environ.get("ROUTEMAIL_CONFIG", "lists.toml"))
    data_dir = Path(o.get("data_dir") or os.environ.get("ROUTEMAIL_DATA", "data"))
    receiver = _receiver_table(config_path)
    secret = (
        o.get("secret")
        or os.environ.get("MAILRECV_SECRET")
        or _secret_file(receiver.get("secret_file"), config_path)
    )
    return Settings(
        config_path=config_path.resolve(),
        data_dir=data_dir.resolve(),
        secret=secret.encode("utf-8") if isinstance(secret, str) else secret,
        on_receipt=o.get("on_receipt") or str(receiver.get("on_receipt", "run")),
        max_size=int(o.get("max_size") or receiver.get("max_size", DEFAULT_MAX_SIZE)),
        clock=o.get("clock") or time.time,
    )


def _receiver_table(config_path: Path) -> dict[str, Any]:
    try:
        table = tomllib.loads(config_path.read_text("utf-8")).get("receiver", {})
    except (OSError, ValueError) as exc:
        log.warning("cannot read [receiver] from %s (%s); using defaults", config_path, exc)
        return {}
    return table if isinstance(table, dict) else {}


def _secret_file(name: Any, config_path: Path) -> str | None:
    if not isinstance(name, str):
        return None
    path = Path(name) if Path(name).is_absolute() else config_path.parent / name
    try:
        return path.read_text("utf-8").strip() or None
    except OSError as exc:
        log.error("cannot read receiver.secret_file %s: %s", path, exc.strerror)
        return None


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The WSGI app; config overrides settings (tests pass paths and a secret)."""
    settings = load_settings(config)
    app = Flask(__name__)
    app.config["ROUTEMAIL"] = settings
    from mailrecv import api, feedback  # here, not on top: api imports this module

    api.register(app)
    feedback.register(app, config)

    @app.post("/mailrecv")
    def mailrecv() -> tuple[Response, int]:
        receipt = receive(settings)
        if settings.on_receipt == "run":
            start_routemail(settings)
        return jsonify(id=receipt.id, duplicate=receipt.duplicate), 200

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        spool = settings.spool
        try:
            spool.ensure()
        except SpoolError as exc:
            return jsonify(ok=False, error=str(exc)), 503
        if not spool.writable():
            return jsonify(ok=False, error=f"{spool.queue} is not writable"), 503
        if settings.secret is None:
            return jsonify(ok=False, error="no shared secret: set MAILRECV_SECRET"), 503
        return jsonify(ok=True), 200

    @app.errorhandler(Rejected)
    def rejected(exc: Rejected) -> tuple[Response, int]:
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        # The sender retries a 503, so an unforeseen failure loses nothing;
        # the traceback goes to the server log, never to the client.
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return jsonify(error="internal error; retry later"), 503

    return app


def receive(settings: Settings) -> Receipt:
    """Check the metadata and signature, stream the body in, make it durable."""
    if settings.secret is None:
        log.error("no shared secret: set MAILRECV_SECRET or receiver.secret_file")
        raise Rejected(503, "receiver has no shared secret configured")
    h = request.headers
    timestamp = h.get(signing.TIMESTAMP, "")
    recipients_text = h.get(signing.RECIPIENTS, "")
    verdicts_text = h.get(signing.VERDICTS, "")
    given = h.get(signing.SIGNATURE, "")
    recipients = parse_recipients(recipients_text)
    verdicts = parse_verdicts(verdicts_text)
    if not given:
        raise Rejected(401, f"missing {signing.SIGNATURE}")
    try:
        skew = abs(settings.clock() - int(timestamp))
    except ValueError:
        raise Rejected(400, f"{signing.TIMESTAMP} must be unix seconds") from None
    if skew > signing.MAX_SKEW_SECONDS:
        raise Rejected(
            401, f"stale timestamp: {int(skew)} s off, limit {signing.MAX_SKEW_SECONDS} s"
        )
    length = request.content_length
    if length is not None and length > settings.max_size:
        raise Rejected(413, f"message of {length} bytes exceeds the {settings.max_size}-byte limit")
    spool = settings.spool
    try:
        spool.ensure()
        with spool.incoming() as incoming:
            _stream_body(incoming, settings.max_size)
            if not signing.valid(
                settings.secret,
                given,
                timestamp,
                recipients_text,
                verdicts_text,
                incoming.sha256.hexdigest(),
            ):
                raise Rejected(401, "bad signature")
            if incoming.size == 0:
                raise Rejected(400, "empty message body")
            return incoming.commit(recipients, verdicts)
    except SpoolError as exc:
        log.error("spool not writable: %s", exc)
        raise Rejected(503, "spool not writable; retry later") from exc


def _stream_body(incoming: Incoming, limit: int) -> None:
    stream = request.stream
    while chunk := stream.read(CHUNK):
        if incoming.size + len(chunk) > limit:
            raise Rejected(413, f"message exceeds the {limit}-byte limit")
        incoming.write(chunk)


def parse_recipients(text: str) -> list[str]:
    if not text.strip():
        raise Rejected(400, f"missing {signing.RECIPIENTS}")
    found = []
    for item in text.split(","):
        address = addresses.normalize(item.strip())
        if address is None:
            raise Rejected(400, f"{signing.RECIPIENTS}: {item.strip()[:100]!r} is not an address")
        found.append(address)
    return found


def parse_verdicts(text: str) -> dict[str, str]:
    verdicts = {}
    for item in text.split():
        name, _, value = item.partition("=")
        if name.lower() not in VERDICT_NAMES or value.upper() not in VERDICT_VALUES:
            raise Rejected(
                400, f"{signing.VERDICTS}: {item[:60]!r} is not name=VALUE with a known verdict"
            )
        verdicts[name.lower()] = value.upper()
    missing = [n for n in VERDICT_NAMES if n not in verdicts]
    if missing:
        raise Rejected(400, f"{signing.VERDICTS}: missing {', '.join(missing)}")
    return verdicts


def start_routemail(settings: Settings) -> None:
    """Start `routemail run` in its own session and do not wait for it."""
    env = dict(os.environ)
    env["ROUTEMAIL_CONFIG"] = str(settings.config_path)
    env["ROUTEMAIL_DATA"] = str(settings.data_dir)
    try:
        subprocess.Popen(
            [sys.executable, "-m", "routemail", "run", "--quiet"],
            env=env,
            cwd=settings.config_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        # The message is safe in the spool; cron or the timer will route it.
        log.error("cannot start routemail run: %s", exc)
