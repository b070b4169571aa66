"""Mail routemail writes itself: moderation requests and forwards to the admin.

The original is carried as a message/rfc822 part, or only its headers as
text/rfc822-headers when it must not be passed on (a virus). Every header field
comes from the header encoder; the original goes in wire form (CRLF line breaks
only, no NUL), and in base64 when it has a line longer than SMTP carries, as
application/octet-stream (RFC 2046 allows message/rfc822 no transfer encoding).
"""

from __future__ import annotations

import binascii
import email.utils
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from routemail.compose import made
from routemail.identity import header_end
from routemail.rewrite.headers import MAX_LINE, address_field, text_field
from routemail.transports.wire import CRLF, LF, wire_form

BASE64_LINE = 76


@dataclass(frozen=True)
class Notice:
    """A message from routemail to people, with the original attached."""

    from_addr: str
    from_name: str
    to: Sequence[str]
    subject: str
    text: str
    original: bytes
    headers_only: bool = False
    reply_to: str | None = None
    domain: str = "localhost"

    def as_bytes(self) -> bytes:
        boundary = self._boundary()
        head = [
            address_field("From", [(self.from_name, self.from_addr)]),
            address_field("To", [("", a) for a in self.to]),
            address_field("Reply-To", [("", self.reply_to)]) if self.reply_to else None,
            text_field("Subject", self.subject),
            made("Date", email.utils.formatdate(usegmt=True)),
            made("Message-ID", email.utils.make_msgid(domain=self.domain)),
            made("Auto-Submitted", "auto-generated"),
            made("MIME-Version", "1.0"),
            made("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
        ]
        out = [b"".join(f.to_bytes() for f in head if f is not None).replace(LF, CRLF)]
        out += [b"--" + boundary.encode(), *self._text_part(), b"--" + boundary.encode()]
        out += self._original_part()
        out += [b"--" + boundary.encode() + b"--", b""]
        return CRLF.join(out)

    def _boundary(self) -> str:
        while True:
            candidate = f"=_routemail_{secrets.token_hex(12)}"
            if candidate.encode() not in self.original:
                return candidate

    def _text_part(self) -> list[bytes]:
        body = wire_form(self.text.encode("utf-8", errors="replace")).rstrip(CRLF)
        if _fits(body):
            encoding = b"7bit" if body.isascii() else b"8bit"
        else:  # a very long line (a huge subject, say): SMTP carries 998 octets at most
            encoding = b"quoted-printable"
            body = binascii.b2a_qp(body.replace(CRLF, LF), istext=True).replace(LF, CRLF)
        return [
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: " + encoding,
            b"",
            body,
        ]

    def _original_part(self) -> list[bytes]:
        raw = wire_form(self.original)
        if self.headers_only:
            end = header_end(raw)
            raw = raw[:end] if end is not None else raw
            kind = b"text/rfc822-headers"
        else:
            kind = b"message/rfc822"
        if _fits(raw):
            encoding = b"7bit" if raw.isascii() else b"8bit"
            return [
                b"Content-Type: " + kind,
                b"Content-Disposition: inline",
                b"Content-Transfer-Encoding: " + encoding,
                b"",
                raw.rstrip(CRLF),
            ]
        if not self.headers_only:
            kind = b'application/octet-stream; name="original.eml"'
        return [
            b"Content-Type: " + kind,
            b'Content-Disposition: attachment; filename="original.eml"',
            b"Content-Transfer-Encoding: base64",
            b"",
            _base64_lines(raw),
        ]


def _fits(data: bytes) -> bool:
    """Whether every CRLF-separated line of data is at most 998 octets long."""
    return all(len(line) <= MAX_LINE for line in data.split(CRLF))


def _base64_lines(data: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    return CRLF.join(encoded[i : i + BASE64_LINE] for i in range(0, len(encoded), BASE64_LINE))
