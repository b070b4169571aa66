"""Mail routemail writes itself: moderation requests and forwards to the admin.

The original is carried verbatim as a message/rfc822 part, or only its
headers as text/rfc822-headers when it must not be passed on (a virus).
"""

from __future__ import annotations

import email.header
import email.utils
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from routemail.spool import header_end

CRLF = b"\r\n"
_LINE_END = re.compile(rb"\r?\n")


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
            ("From", email.utils.formataddr((self.from_name, self.from_addr))),
            ("To", ", ".join(self.to)),
            ("Subject", _encode(self.subject)),
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Message-ID", email.utils.make_msgid(domain=self.domain)),
            ("Auto-Submitted", "auto-generated"),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
        ]
        if self.reply_to:
            head.insert(2, ("Reply-To", self.reply_to))
        out = [f"{name}: {value}".encode("ascii") for name, value in head]
        out += [b"", b"--" + boundary.encode(), *self._text_part(), b"--" + boundary.encode()]
        out += self._original_part()
        out += [b"--" + boundary.encode() + b"--", b""]
        return CRLF.join(out)

    def _boundary(self) -> str:
        while True:
            candidate = f"=_routemail_{secrets.token_hex(12)}"
            if candidate.encode() not in self.original:
                return candidate

    def _text_part(self) -> list[bytes]:
        body = _LINE_END.sub(CRLF, self.text.encode("utf-8")).rstrip(CRLF)
        return [
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: 8bit",
            b"",
            body,
        ]

    def _original_part(self) -> list[bytes]:
        raw = _LINE_END.sub(CRLF, self.original)
        if self.headers_only:
            end = header_end(raw)
            raw = raw[:end] if end is not None else raw
            kind = b"text/rfc822-headers"
        else:
            kind = b"message/rfc822"
        encoding = b"7bit" if raw.isascii() else b"8bit"
        return [
            b"Content-Type: " + kind,
            b"Content-Disposition: inline",
            b"Content-Transfer-Encoding: " + encoding,
            b"",
            raw.rstrip(CRLF),
        ]


def _encode(text: str) -> str:
    """A header value, RFC 2047-encoded when it is not plain ASCII; never folded oddly."""
    text = " ".join(text.split())
    if text.isascii():
        return text
    return email.header.Header(text, "utf-8").encode(maxlinelen=76, linesep="\r\n")
