"""POST /mailrecv: a signed message becomes a durable queue entry.

This is the receiver's one hot path, so it is answered in plain WSGI in
front of Flask: the checks of docs/receiver-protocol.md, the spool, and a line of JSON,
without a request context, routing or a response object. Every other path
falls through to the Flask app.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_content_length, get_input_stream

from mailrecv.monitoring import count_post
from mailrecv.settings import Settings
from mailxfer import signing
from routemail import addresses, rfc5322
from routemail.background import start_run
from routemail.config import VERDICT_NAMES, VERDICT_VALUES
from routemail.errors import SpoolError
from routemail.incoming import SPILL_BYTES, Incoming, Receipt

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

CHUNK = 1 << 16
# A body whose digest the sender did not declare is read before its signature
# can be checked; up to this size the spool holds it in memory meanwhile.
UNDECLARED_LIMIT = SPILL_BYTES
# A refused body is read into nothing up to this size (see _ThenDiscard); past
# it the connection is simply closed. Above nginx's client_max_body_size.
DISCARD_LIMIT = 64 * 1024 * 1024
log = logging.getLogger("mailrecv")


class MailrecvEndpoint:
    """WSGI middleware: answers POST /mailrecv itself and passes everything else on."""

    def __init__(self, settings: Settings, app: WSGIApplication) -> None:
        self.settings = settings
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/mailrecv":
            return self.app(environ, start_response)
        headers = [("Content-Type", "application/json")]
        if environ.get("REQUEST_METHOD") == "POST":
            status, answer = self.answer(environ)
        else:
            status, answer = 405, {"error": "use POST"}
            headers.append(("Allow", "POST"))
            log.info("refused a %s from %s: 405", environ.get("REQUEST_METHOD"), _client(environ))
        count_post(status)
        body = json.dumps(answer, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [*headers, ("Content-Length", str(len(body)))],
        )
        return [body] if status == 200 else _ThenDiscard(body, environ)

    def answer(self, environ: WSGIEnvironment) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer, with one log line saying what happened."""
        client = _client(environ)
        try:
            stored = receive(self.settings, environ)
        except Rejected as exc:
            log.info("refused a post from %s: %d %s", client, exc.status, exc.message)
            return exc.status, {"error": exc.message}
        except HTTPException as exc:  # e.g. the client went away mid-body
            status = exc.code or 400
            log.info("refused a post from %s: %d %s", client, status, exc.description)
            return status, {"error": exc.description or exc.name}
        except Exception:
            # The sender retries a 503, so an unforeseen failure loses nothing;
            # the traceback goes to the server log, never to the client.
            log.exception("unexpected error handling a post from %s", client)
            return 503, {"error": "internal error; retry later"}
        receipt = stored.receipt
        log.info(
            "queued %s from %s%s", receipt.id, client, " (duplicate)" if receipt.duplicate else ""
        )
        if self.settings.on_receipt == "run":
            start_routemail(self.settings)
        return 200, {"id": receipt.id, "duplicate": receipt.duplicate, "sha256": stored.sha256}


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Rejected(Exception):
    """A request answered with an error status and a JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Stored:
    """A receipt and the SHA-256 of the body stored, which the answer echoes as proof."""

    receipt: Receipt
    sha256: str


def receive(settings: Settings, environ: WSGIEnvironment) -> Stored:
    """Check the metadata and signature, stream the body in, make it durable.

    With X-Mailrecv-Body-SHA256 the signature is checked before a byte of
    the body is read, and the body against the digest as it arrives. A
    sender without it (mailxfer before that header) is still served, but
    only for a body that fits in memory: unsigned bytes never reach the disk.
    """
    if settings.secret is None:
        log.error("no shared secret: set MAILRECV_SECRET or receiver.secret_file")
        raise Rejected(503, "receiver has no shared secret configured")
    timestamp = _header(environ, signing.TIMESTAMP)
    recipients_text = _header(environ, signing.RECIPIENTS)
    verdicts_text = _header(environ, signing.VERDICTS)
    given = _header(environ, signing.SIGNATURE)
    declared = _header(environ, signing.BODY_SHA256).strip()
    recipients = parse_recipients(recipients_text)
    verdicts = parse_verdicts(verdicts_text)
    if not given:
        raise Rejected(401, f"missing {signing.SIGNATURE}")
    _check_timestamp(settings, timestamp)
    length = get_content_length(environ)
    if length is not None and length > settings.max_size:
        raise Rejected(413, f"message of {length} bytes exceeds the {settings.max_size}-byte limit")

    def signed_over(digest: str) -> bool:
        assert settings.secret is not None
        return signing.valid(
            settings.secret, given, timestamp, recipients_text, verdicts_text, digest
        )

    if declared:
        if not signing.is_sha256_hex(declared):
            raise Rejected(400, f"{signing.BODY_SHA256} must be 64 lowercase hex digits")
        if not signed_over(declared):
            raise Rejected(401, "bad signature")
    limit, too_big = _body_limit(settings.max_size, declared)
    if length is not None and length > limit:
        raise too_big

    def check_signed(digest: str) -> None:
        if declared and not hmac.compare_digest(digest, declared):
            raise Rejected(400, f"the body does not match its {signing.BODY_SHA256}")
        if not declared and not signed_over(digest):
            raise Rejected(401, "bad signature")

    return store(
        settings, get_input_stream(environ), recipients, verdicts, (limit, too_big), check_signed
    )


def store(
    settings: Settings,
    stream: Readable,
    recipients: list[str],
    verdicts: dict[str, str],
    limit: tuple[int, Rejected],
    check: Callable[[str], None] = lambda digest: None,
) -> Stored:
    """Stream a message into the spool and make it durable with this receipt: the one
    way mail enters the queue from outside (POST /mailrecv, POST /ses-inbound).

    limit is the most bytes to read and the refusal for more; check(sha256 hex)
    may refuse the whole body before anything is committed. Raises Rejected.
    """
    most, too_big = limit
    try:
        with settings.spool.incoming() as incoming:
            _stream_body(stream, incoming, most, too_big)
            digest = incoming.sha256.hexdigest()
            check(digest)
            if incoming.size == 0:
                raise Rejected(400, "empty message body")
            problem = rfc5322.header_problem(incoming.head)
            if problem:
                raise Rejected(400, problem)
            return Stored(incoming.commit(recipients, verdicts), digest)
    except SpoolError as exc:
        log.error("spool not writable: %s", exc)
        raise Rejected(503, "spool not writable; retry later") from exc


def _check_timestamp(settings: Settings, timestamp: str) -> None:
    try:
        skew = abs(settings.clock() - int(timestamp))
    except ValueError:
        raise Rejected(400, f"{signing.TIMESTAMP} must be unix seconds") from None
    if skew > signing.MAX_SKEW_SECONDS:
        raise Rejected(
            401, f"stale timestamp: {int(skew)} s off, limit {signing.MAX_SKEW_SECONDS} s"
        )


def _body_limit(max_size: int, declared: str) -> tuple[int, Rejected]:
    """How many body bytes to read at most, and the refusal for more."""
    if declared or max_size <= UNDECLARED_LIMIT:
        return max_size, Rejected(413, f"message exceeds the {max_size}-byte limit")
    return UNDECLARED_LIMIT, Rejected(
        400,
        f"a body over {UNDECLARED_LIMIT} bytes needs {signing.BODY_SHA256} (signed), so "
        "that the signature is checked before the body is read: upgrade mailxfer",
    )


class _ThenDiscard:
    """A refusal's answer, after which what is left of the request body is read into
    nothing, up to DISCARD_LIMIT: the sender has its answer before any of that.

    A server that closes a connection with input still unread resets it, and
    the refusal may never reach the sender: nginx, still sending the body it
    buffered, answers 502 instead. Only where the server ends the input at
    the body's end (gunicorn); a CGI server has had the whole body already.
    """

    def __init__(self, body: bytes, environ: WSGIEnvironment) -> None:
        self.body = body
        self.environ = environ

    def __iter__(self) -> Iterator[bytes]:
        yield self.body

    def close(self) -> None:
        if not self.environ.get("wsgi.input_terminated"):
            return
        stream = self.environ["wsgi.input"]
        left = DISCARD_LIMIT
        with contextlib.suppress(OSError, ValueError, HTTPException):
            while left > 0 and (chunk := stream.read(min(CHUNK, left))):
                left -= len(chunk)


def _client(environ: WSGIEnvironment) -> str:
    return str(environ.get("REMOTE_ADDR", "-"))


def _header(environ: WSGIEnvironment, name: str) -> str:
    return str(environ.get("HTTP_" + name.upper().replace("-", "_"), ""))


def _stream_body(stream: Readable, incoming: Incoming, limit: int, too_big: Rejected) -> None:
    while chunk := stream.read(CHUNK):
        if incoming.size + len(chunk) > limit:
            raise too_big
        incoming.write(chunk)


def parse_recipients(text: str) -> list[str]:
    if not text.strip():
        raise Rejected(400, f"missing {signing.RECIPIENTS}")
    return normalize_recipients(text.split(","), signing.RECIPIENTS)


def normalize_recipients(items: Iterable[str], where: str) -> list[str]:
    """The envelope recipients, normalized; Rejected (400) naming where for one that is
    not an address."""
    found = []
    for item in items:
        address = addresses.normalize(item.strip())
        if address is None:
            raise Rejected(400, f"{where}: {item.strip()[:100]!r} is not an address")
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
    """Start `routemail run` in the background, unless a working run will see the new mail."""
    pid = start_run(settings.config_path, settings.data_dir, log.warning)
    if pid is not None:
        log.info("started routemail run (pid %d)", pid)
