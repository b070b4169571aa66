"""The SMTP transport: one connection to any provider (a run has one per sender), STARTTLS or
implicit TLS, auth, PIPELINING when offered."""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from routemail import addresses
from routemail.identity import header_end
from routemail.transports import PERMANENT, SENT, TEMPORARY, Envelope, Result, TransportError
from routemail.transports.wire import END_OF_DATA, smtp_pieces, writes

if TYPE_CHECKING:
    from routemail.config import Smtp

log = logging.getLogger(__name__)

# Replies that concern our login, not the copy: giving up on every recipient
# because a password expired would lose the whole list's mail.
AUTH_CODES = frozenset({530, 534, 535, 538})
SERVICE_CLOSING = 421
START_INPUT = 354


class SmtpTransport:
    """Sends each copy in its own SMTP transaction over a connection kept for the run,
    with MAIL, RCPT and DATA in one write when the server offers PIPELINING.

    With PIPELINING, a caller that already knows the copy it sends next names it
    (`following`): its MAIL, RCPT and DATA go in the same write as this copy's content
    (RFC 2920 3.1 lets content be the first command of a group), so a copy costs one
    round trip, not two. That next copy must then be this session's next send: a server
    that answered its DATA with 354 waits for content, and the only way out is to hang
    up (which the next send does when handed another copy: nothing was delivered).
    """

    takes_following = True

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
        self._conn: smtplib.SMTP | None = None
        # The transaction whose commands went out after the last copy's content, its
        # replies not read yet.
        self._announced: _Announced | None = None

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

    def _connection(self) -> smtplib.SMTP:
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def _drop(self) -> None:
        self._announced = None
        if self._conn is not None:
            _quietly_close(self._conn)
            self._conn = None

    # -- one copy ------------------------------------------------------------

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        tags: Mapping[str, str],
        following: Envelope | None = None,
    ) -> Result:
        """One copy; following, the copy this session sends next (see the class)."""
        announced, self._announced = self._announced, None
        if announced is not None and not announced.names(sender, recipient, message):
            self._drop()  # its DATA may be waiting for content that will not come
            announced = None
        data = announced.data if announced is not None else Data(message)
        fresh = self._conn is None
        try:
            try:
                conn = self._connection()
                return self._transaction(conn, sender, recipient, data, announced, following)
            except _StaleConnection:
                # The server closed an idle connection before MAIL FROM was
                # answered: nothing was sent, so try again at once on a new one.
                self._drop()
                if fresh:
                    raise smtplib.SMTPServerDisconnected("connection closed on MAIL FROM") from None
                conn = self._connection()
                return self._transaction(conn, sender, recipient, data, None, following)
        except (TransportError, smtplib.SMTPException, OSError) as exc:
            self._drop()
            return self.failure(exc)

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

    def _transaction(
        self,
        conn: smtplib.SMTP,
        sender: str,
        recipient: str,
        data: Data,
        announced: _Announced | None,
        following: Envelope | None,
    ) -> Result:
        if announced is not None:  # its commands went out with the last copy's content
            return self._replies(conn, announced.options, data, following)
        options = self.options(conn, sender, recipient, data)
        if isinstance(options, Result):
            return options
        if conn.has_extn("pipelining"):
            try:
                conn.send(_commands(sender, recipient, options))
            except smtplib.SMTPServerDisconnected as exc:
                raise _StaleConnection from exc
            return self._replies(conn, options, data, following)
        try:
            code, text = conn.mail(addresses.ascii_domain(sender), options)
        except smtplib.SMTPServerDisconnected as exc:
            raise _StaleConnection from exc
        if code != 250:
            return self._refused(conn, code, text, "MAIL FROM")
        code, text = conn.rcpt(addresses.ascii_domain(recipient))
        if code not in (250, 251):
            return self._refused(conn, code, text, "RCPT TO")
        code, text = conn.docmd("DATA")
        if code != START_INPUT:
            return self._refused(conn, code, text, "DATA")
        return self._content(conn, data, None)

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

    def _replies(
        self,
        conn: smtplib.SMTP,
        options: list[str],
        data: Data,
        following: Envelope | None,
    ) -> Result:
        """The replies to MAIL, RCPT and DATA written in one go (RFC 2920), read in
        order; then the content."""
        try:
            mail = conn.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            # Closed before it answered MAIL FROM: no DATA was sent, nothing arrived.
            raise _StaleConnection from exc
        refused: tuple[int, bytes, str] | None = None
        if mail[0] != 250:
            refused = (*mail, "MAIL FROM")
        try:
            rcpt = conn.getreply()
            if refused is None and rcpt[0] not in (250, 251):
                refused = (*rcpt, "RCPT TO")
            code, text = conn.getreply()
            if refused is None and code != START_INPUT:
                refused = (code, text, "DATA")
            elif refused is not None and code == START_INPUT:
                # A server that wants content though the transaction failed: end it empty.
                conn.send(END_OF_DATA)
                conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError):
            if refused is None:
                raise
            # It said why (a 421, say) and hung up: that answer is the outcome.
            self._drop()
        if refused is not None:
            return self._refused(conn, *refused)
        return self._content(conn, data, following)

    def _content(self, conn: smtplib.SMTP, data: Data, following: Envelope | None) -> Result:
        """After 354: the copy, already in DATA form with its closing dot, in one write
        (a few for a big copy, whose shared pieces are written as they are), and the
        commands of the copy that follows, when there is one to announce."""
        announced = self._announce(conn, following)
        pieces = data.pieces
        if announced is not None:
            nxt = announced.envelope
            pieces = [*pieces, _commands(nxt.sender, nxt.recipient, announced.options)]
        for chunk in writes(pieces):
            conn.send(chunk)
        self._announced = announced
        code, text = conn.getreply()
        if code != 250:
            # The end of data ends the transaction whatever the answer (RFC 5321
            # 4.1.1.4): no RSET, which would also undo the one announced after it.
            return self._refused(conn, code, text, "end of data", reset=False)
        return Result(SENT, text.decode("utf-8", "replace"))

    def _announce(self, conn: smtplib.SMTP, following: Envelope | None) -> _Announced | None:
        """What to write of the following copy after this one's content: nothing
        without PIPELINING, or for a copy this connection cannot take (its own send
        says why)."""
        if following is None or not conn.has_extn("pipelining"):
            return None
        data = Data(following.message)
        options = self.options(conn, following.sender, following.recipient, data)
        if isinstance(options, Result):
            return None
        return _Announced(following, data, options)

    def _refused(
        self, conn: smtplib.SMTP, code: int, text: bytes | str, stage: str, reset: bool = True
    ) -> Result:
        if drops_connection(code):
            self._drop()
        elif reset:
            try:
                conn.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        return refusal(code, text, stage)

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def close(self) -> None:
        if self._announced is not None:
            # A server waiting for the announced copy's content would take QUIT as
            # content: hang up instead (it delivers nothing without the final dot).
            self._drop()
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()


@dataclass
class _Announced:
    """A copy whose MAIL, RCPT and DATA went out after the previous copy's content."""

    envelope: Envelope
    data: Data
    options: list[str]

    def names(self, sender: str, recipient: str, message: bytes) -> bool:
        """Whether a send is of this copy (the same bytes object, not only equal ones)."""
        mine = self.envelope
        return mine.message is message and (mine.sender, mine.recipient) == (sender, recipient)


class Data:
    """A copy's DATA form (smtp_pieces) and what MAIL FROM declares of it."""

    def __init__(self, message: bytes) -> None:
        self.pieces = smtp_pieces(message)
        self.size = sum(len(piece) for piece in self.pieces)
        # Its DATA form differs from it by line breaks, dots and NUL only.
        self.ascii = message.isascii()
        # UTF-8 header fields (RFC 6532: an internationalised author's Reply-To, say).
        end = header_end(message)
        self.utf8_header = not self.ascii and not message[:end].isascii()


class _StaleConnection(smtplib.SMTPServerDisconnected):
    """MAIL FROM met a closed connection: nothing of this copy was sent."""


def _path(address: str) -> bool:
    """Whether address can stand between the angle brackets of MAIL FROM or RCPT TO:
    nothing in it may end the command line or the path. (The commands are written as
    they are: smtplib.quoteaddr parses every address with the email package.)"""
    return not any(c in address for c in "\r\n\x00<>")


def _commands(sender: str, recipient: str, options: list[str]) -> bytes:
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
    text = exc.smtp_error
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{exc.smtp_code} {text}".strip()


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        log.debug("closing the SMTP connection failed", exc_info=True)
