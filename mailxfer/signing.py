"""The receiver protocol's HMAC: the one definition both sides use.

The string signed is timestamp, recipients and verdicts as sent, each
followed by a newline, then the hex SHA-256 of the body.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP = "X-Mailrecv-Timestamp"
RECIPIENTS = "X-Mailrecv-Recipients"
VERDICTS = "X-Mailrecv-Verdicts"
SIGNATURE = "X-Mailrecv-Signature"
MAX_SKEW_SECONDS = 300
VERDICT_NAMES = ("dkim", "dmarc", "spf", "spam", "virus")


def signature(
    secret: bytes, timestamp: str, recipients: str, verdicts: str, body_sha256: str
) -> str:
    text = f"{timestamp}\n{recipients}\n{verdicts}\n{body_sha256}"
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_headers(
    secret: bytes, timestamp: int, recipients: list[str], verdicts: dict[str, str], body_sha256: str
) -> dict[str, str]:
    """The four X-Mailrecv-* headers for a POST of a body with this digest."""
    rcpt = ",".join(recipients)
    verd = format_verdicts(verdicts)
    ts = str(timestamp)
    return {
        TIMESTAMP: ts,
        RECIPIENTS: rcpt,
        VERDICTS: verd,
        SIGNATURE: signature(secret, ts, rcpt, verd, body_sha256),
    }


def format_verdicts(verdicts: dict[str, str]) -> str:
    return " ".join(f"{n}={verdicts.get(n, 'DISABLED')}" for n in VERDICT_NAMES)


def valid(
    secret: bytes, given: str, timestamp: str, recipients: str, verdicts: str, body_sha256: str
) -> bool:
    expected = signature(secret, timestamp, recipients, verdicts, body_sha256)
    return hmac.compare_digest(expected, given.strip().lower())
