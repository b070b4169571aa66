"""The receiver protocol's HMAC: the one definition both sides use.

The string signed is timestamp, recipients and verdicts as sent, each
followed by a newline, then the hex SHA-256 of the body. The sender also
names that digest in a header, so the receiver can check the signature
before it reads the body, and then the body against the digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re

TIMESTAMP = "X-Mailrecv-Timestamp"
RECIPIENTS = "X-Mailrecv-Recipients"
VERDICTS = "X-Mailrecv-Verdicts"
SIGNATURE = "X-Mailrecv-Signature"
BODY_SHA256 = "X-Mailrecv-Body-SHA256"
MAX_SKEW_SECONDS = 300
VERDICT_NAMES = ("dkim", "dmarc", "spf", "spam", "virus")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def signature(
    secret: bytes, timestamp: str, recipients: str, verdicts: str, body_sha256: str
) -> str:
    text = f"{timestamp}\n{recipients}\n{verdicts}\n{body_sha256}"
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_headers(
    secret: bytes, timestamp: int, recipients: list[str], verdicts: dict[str, str], body_sha256: str
) -> dict[str, str]:
    """The five X-Mailrecv-* headers for a POST of a body with this digest."""
    rcpt = ",".join(recipients)
    verd = format_verdicts(verdicts)
    ts = str(timestamp)
    return {
        TIMESTAMP: ts,
        RECIPIENTS: rcpt,
        VERDICTS: verd,
        SIGNATURE: signature(secret, ts, rcpt, verd, body_sha256),
        BODY_SHA256: body_sha256,
    }


def is_sha256_hex(text: str) -> bool:
    """64 lowercase hex digits, as hashlib's hexdigest() writes a SHA-256."""
    return _SHA256_HEX.fullmatch(text) is not None


def format_verdicts(verdicts: dict[str, str]) -> str:
    return " ".join(f"{n}={verdicts.get(n, 'DISABLED')}" for n in VERDICT_NAMES)


def valid(
    secret: bytes, given: str, timestamp: str, recipients: str, verdicts: str, body_sha256: str
) -> bool:
    expected = signature(secret, timestamp, recipients, verdicts, body_sha256)
    given = given.strip().lower()
    # compare_digest raises TypeError on a str with non-ASCII characters; such a value
    # is no hex signature (saying so leaks nothing about the expected one).
    return given.isascii() and hmac.compare_digest(expected, given)
