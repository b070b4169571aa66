"""Verdicts and envelope recipients read from the headers SES writes into a stored message."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import BinaryIO

from mailxfer.signing import VERDICT_NAMES

# SES prepends its headers, so a bigger header block than this is not SES's
# business; reading a bounded amount keeps a hostile message from costing memory.
MAX_HEADER_BYTES = 512 * 1024

# RFC 8601 / RFC 7208 result words mapped onto SES's verdict values.
RESULT_VERDICTS = {
    "pass": "PASS",
    "fail": "FAIL",
    "softfail": "FAIL",
    "hardfail": "FAIL",
    "neutral": "GRAY",
    "none": "GRAY",
    "policy": "GRAY",
    "temperror": "PROCESSING_FAILED",
    "permerror": "PROCESSING_FAILED",
}
SES_VALUES = ("PASS", "FAIL", "GRAY", "PROCESSING_FAILED", "DISABLED")
# Absent evidence is never a pass: DISABLED is what SES reports when it did not check.
UNKNOWN = "DISABLED"
SES_AUTHSERV = "amazonses.com"
_RESULT = re.compile(r"\b(dkim|dmarc|spf)\s*=\s*([a-zA-Z]+)")
# The local part excludes '@': with it, a long run of '@' gave every split point of the
# run to try against every end of it (cubic: 8,000 bytes took seconds).
_FOR_CLAUSE = re.compile(r"\bfor\s+<?([^\s<>;@]+@[^\s<>;]+?)>?\s*;", re.IGNORECASE)
_ENVELOPE_HEADERS = ("X-Original-To", "Delivered-To", "X-Envelope-To", "Envelope-To")


def read_header_block(stream: BinaryIO) -> bytes:
    """The header block of a seekable message stream, which is left rewound."""
    data = b""
    while len(data) < MAX_HEADER_BYTES:
        chunk = stream.read(8192)
        if not chunk:
            break
        data += chunk
        end = _blank_line(data)
        if end is not None:
            data = data[:end]
            break
    stream.seek(0)
    return data[:MAX_HEADER_BYTES]


def _blank_line(data: bytes) -> int | None:
    positions = [p for p in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if p >= 0]
    return min(positions) if positions else None


def parse_headers(head: bytes) -> Message:
    # compat32 never raises on malformed headers; the values are only matched below.
    return BytesHeaderParser().parsebytes(head + b"\r\n\r\n")


def _first(msg: Message, name: str) -> str:
    value = msg.get(name)
    return str(value).strip() if value is not None else ""


def _ses_value(text: str) -> str:
    word = text.strip().split(maxsplit=1)[0].upper() if text.strip() else ""
    return word if word in SES_VALUES else UNKNOWN


def _result_value(word: str) -> str:
    return RESULT_VERDICTS.get(word.lower(), "PROCESSING_FAILED")


def _ses_authentication_results(msg: Message) -> str:
    """The topmost Authentication-Results written by SES; a sender can forge others."""
    for value in msg.get_all("Authentication-Results") or []:
        text = " ".join(str(value).split())
        if text.split(";", 1)[0].strip().lower() == SES_AUTHSERV:
            return text
    return ""


def verdicts_from_headers(msg: Message) -> dict[str, str]:
    """The five verdicts as SES recorded them in the stored message's headers."""
    verdicts = dict.fromkeys(VERDICT_NAMES, UNKNOWN)
    if spam := _first(msg, "X-SES-Spam-Verdict"):
        verdicts["spam"] = _ses_value(spam)
    if virus := _first(msg, "X-SES-Virus-Verdict"):
        verdicts["virus"] = _ses_value(virus)
    results = _ses_authentication_results(msg)
    found: dict[str, list[str]] = {}
    for name, word in _RESULT.findall(results):
        found.setdefault(name.lower(), []).append(_result_value(word))
    if results:
        # SES's own results header lists what it checked; a method missing there was absent.
        for name in ("dkim", "dmarc", "spf"):
            values = found.get(name, [])
            # Any passing signature makes SES's DKIM verdict PASS.
            verdicts[name] = "PASS" if "PASS" in values else (values[0] if values else "GRAY")
    if spf := _first(msg, "Received-SPF"):
        verdicts["spf"] = _result_value(spf.split(maxsplit=1)[0]) if spf.split() else UNKNOWN
    return verdicts


def recipients_from_headers(msg: Message, domains: Iterable[str] = ()) -> list[str]:
    """Envelope recipients, as far as the stored message shows them.

    SES's X-SES-RECEIPT header is opaque, so the evidence is, in order: the
    `for <address>` clause of the topmost Received header (SES writes it when
    a message has one recipient), delivery headers such as X-Original-To, and
    last the To and Cc addresses, kept only when on one of `domains`.
    """
    wanted = {d.lower().lstrip("@") for d in domains if d.strip()}
    received = msg.get_all("Received") or []
    if received:
        match = _FOR_CLAUSE.search(" ".join(str(received[0]).split()))
        if match:
            return [match.group(1).lower()]
    for name in _ENVELOPE_HEADERS:
        found = _addresses(msg.get_all(name) or [])
        if found:
            return found
    visible = _addresses([*(msg.get_all("To") or []), *(msg.get_all("Cc") or [])])
    if not wanted:
        return visible
    return [a for a in visible if a.rpartition("@")[2] in wanted]


def _addresses(values: Sequence[object]) -> list[str]:
    found: list[str] = []
    for _name, address in getaddresses([str(v) for v in values]):
        address = address.strip().lower()
        if "@" in address and address not in found:
            found.append(address)
    return found
