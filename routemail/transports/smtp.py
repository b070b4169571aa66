"""SMTP to any provider: connections set up with STARTTLS or implicit TLS and a login,
the MAIL FROM parameters a copy needs, and what the server's answers mean.

The copies go out through routemail.transports.smtp_pool, which drives several of
these connections without blocking."""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from typing import TYPE_CHECKING

from routemail import addresses
from routemail.identity import header_end
from routemail.transports import PERMANENT, TEMPORARY, Result, TransportError
from routemail.transports.wire import smtp_pieces

if TYPE_CHECKING:
    from routemail.config import Smtp

log = logging.getLogger(__name__)

# Replies that concern our login, not the copy: giving up on every recipient
# because a password expired would lose the whole list's mail.
AUTH_CODES = frozenset({530, 534, 535, 538})
SERVICE_CLOSING = 421
START_INPUT = 354


class SmtpConnector:
    """Opens connections to the configured relay, ready for MAIL FROM (greeted, TLS as
    configured, logged in), and says what the relay's answers and failures mean for
    a copy. The copies themselves go through routemail.transports.smtp_pool."""

    def __init__(self, settings: Smtp, *, ca_file: str | None = None) -> None:
        self.settings = settings
        self.password: str | None = None
        if settings.username:
            name = settings.password_env or ""
            password = os.environ.get(name) if name else None
            if not password:
                raise TransportError(
                    f"delivery.smtp: the password for {settings.username} is read from the "
                    f"environment variable {name or '(password_env not set)'}, which is empty "
                    "or unset; export it before running routemail"
                )
            self.password = password
        self.context: ssl.SSLContext | None = None
        if settings.tls != "none":
            try:
                self.context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(
                    f"delivery.smtp.ca_file: cannot load {ca_file}: {exc}; "
                    "give a PEM file holding the server's CA certificate"
                ) from exc

    # -- the connection ------------------------------------------------------

    def connect(self) -> smtplib.SMTP:
        """A connection ready for MAIL FROM: greeted, TLS as configured, logged in."""
        s = self.settings
        conn: smtplib.SMTP
        if s.tls == "implicit":
            conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self.context)
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            conn.ehlo()
            if s.tls == "starttls":
                if not conn.has_extn("starttls"):
                    # Never fall back to plain text: the password and the mail would leak.
                    raise TransportError(
                        f"{s.host}:{s.port} does not offer STARTTLS; use tls = "
                        '"implicit" with its TLS port, or tls = "none" only on a trusted network'
                    )
                conn.starttls(context=self.context)
                conn.ehlo()
            if s.username and self.password is not None:
                conn.login(s.username, self.password)
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def failure(self, exc: TransportError | smtplib.SMTPException | OSError) -> Result:
        """What an exception met while connecting or sending means for the copy: the
        server, not the copy, is at fault, so it is a temporary failure that halts."""
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return Result(
                TEMPORARY,
                f"smtp: login as {self.settings.username} refused: {_reply(exc)}; "
                f"check delivery.smtp.username and ${self.settings.password_env}",
                halt=True,
            )
        if isinstance(exc, (TransportError, smtplib.SMTPNotSupportedError)):
            return Result(TEMPORARY, f"smtp: {exc}", halt=True)
        if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == -1:
            # smtplib's code for a line that does not start with one; it keeps the line
            # from its fifth byte on.
            return Result(
                TEMPORARY,
                f"smtp: {self.where} does not talk SMTP: it said {_reply_text(exc)!r}, not a"
                " reply code; check delivery.smtp.host and port",
                halt=True,
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            # A reply outside a transaction (greeting, EHLO, STARTTLS): the server, not the copy.
            return Result(TEMPORARY, f"smtp: {self.where} answered {_reply(exc)}", halt=True)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Result(
                TEMPORARY,
                f"smtp: {self.where} certificate not trusted ({exc.verify_message}); "
                "set delivery.smtp.ca_file to its CA certificate",
                halt=True,
            )
        # Refused, reset, timed out, or closed mid-transaction: the copy may or may
        # not have arrived; a retry risks a duplicate, never a loss.
        return Result(TEMPORARY, f"smtp: {self.where}: {type(exc).__name__}: {exc}", halt=True)

    def options(
        self, conn: smtplib.SMTP, sender: str, recipient: str, data: Data
    ) -> list[str] | Result:
        """The MAIL FROM parameters of a copy, or why it cannot go over this connection."""
        if not (_path(sender) and _path(recipient)):
            return Result(PERMANENT, f"smtp: {sender!r} to {recipient!r}: not a mail address")
        sender, recipient = addresses.ascii_domain(sender), addresses.ascii_domain(recipient)
        options = [f"SIZE={data.size}"] if conn.has_extn("size") else []
        if conn.has_extn("8bitmime") and not data.ascii:
            options.append("BODY=8BITMIME")
        utf8_path = not (sender.isascii() and recipient.isascii())
        if utf8_path and not conn.has_extn("smtputf8"):
            return Result(
                PERMANENT,
                f"smtp: {self.where} does not offer SMTPUTF8, which mail to or from a"
                f" UTF-8 address ({recipient if not recipient.isascii() else sender})"
                " needs (RFC 6531); send it through a relay that offers SMTPUTF8",
            )
        # RFC 6531 declares UTF-8 header fields too, where the server can take them; a
        # server without SMTPUTF8 gets them as 8-bit text, which readers mostly handle,
        # rather than a list post refused for everyone because its author's is UTF-8.
        if utf8_path or (data.utf8_header and conn.has_extn("smtputf8")):
            options.append("SMTPUTF8")
        return options

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"


class Data:
    """A copy's DATA form (smtp_pieces) and what MAIL FROM declares of it."""

    def __init__(self, message: bytes) -> None:
        self.pieces = smtp_pieces(message)
        self.size = sum(len(piece) for piece in self.pieces)
        # Its DATA form differs from it by line breaks, dots and NUL only.
        self.ascii = message.isascii()
        # UTF-8 header fields (RFC 6532: an internationalised author's Reply-To, say).
        self.utf8_header = not self.ascii and not message[: header_end(message)].isascii()


def _path(address: str) -> bool:
    """Whether address can stand between the angle brackets of MAIL FROM or RCPT TO:
    nothing in it may end the command line or the path. (The commands are written as
    they are: smtplib.quoteaddr parses every address with the email package.)"""
    return not any(c in address for c in "\r\n\x00<>")


def commands(sender: str, recipient: str, options: list[str]) -> bytes:
    """MAIL, RCPT and DATA of one copy, to write at once (RFC 2920)."""
    sender, recipient = addresses.ascii_domain(sender), addresses.ascii_domain(recipient)
    params = "".join(" " + option for option in options)
    text = f"MAIL FROM:<{sender}>{params}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
    return text.encode("utf-8") if "SMTPUTF8" in options else text.encode("ascii")


def refusal(code: int, text: bytes | str, stage: str) -> Result:
    """What a refusal of one copy means: permanent for 5xx, temporary (throttled when it
    says so, halting for a 421 or a login problem) otherwise."""
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    reply = f"{code} {said}".strip()
    detail = f"smtp: {stage} refused: {reply}"
    if code in AUTH_CODES:
        return Result(TEMPORARY, detail + "; check delivery.smtp credentials", halt=True)
    if code >= 500:
        return Result(PERMANENT, detail)
    lowered = reply.lower()
    throttled = code == 454 or "throttl" in lowered or "rate limit" in lowered
    return Result(TEMPORARY, detail, throttled=throttled, halt=code == SERVICE_CLOSING)


def drops_connection(code: int) -> bool:
    """Whether a refusal leaves the connection unusable: the server is closing it, or
    answered with something that is not a refusal at all."""
    return code == SERVICE_CLOSING or code < 400


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_reply_text(exc)}".strip()


def _reply_text(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        log.debug("closing the SMTP connection failed", exc_info=True)
