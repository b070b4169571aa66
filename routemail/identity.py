"""Which receipts are the same message: the queue id and the message's fingerprint.

The rule is documented in docs/spool-format.md ("The id" and "Same message").
A Message-ID names an entry but does not own it: a receipt joins the entry
only when it is the same message, that is its bytes are identical or its
fingerprint is. The fingerprint covers the body and the fields an author
writes, not the trace fields every relay adds, so a re-delivery with other
Received: lines is still the same message. A different message reusing the
Message-ID gets a variant id derived from the id and its fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

HEADER_SCAN_LIMIT = 1 << 20  # header fields beyond the first MiB are not looked at
# What an author writes (RFC 5322 originator, destination, identification and
# informational fields, and the MIME fields that say how to read the body).
AUTHOR_FIELDS = frozenset(
    {
        b"from",
        b"sender",
        b"reply-to",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"in-reply-to",
        b"references",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
    }
)
FINGERPRINT_VERSION = b"routemail fingerprint 1\n"
_BLANK_LINE = re.compile(b"\n\r?\n")
_WHITESPACE = re.compile(rb"[ \t\r\n]+")


def header_end(data: bytes | bytearray) -> int | None:
    """Where the body starts after the header block's blank line, if it has one."""
    if data.startswith((b"\r\n", b"\n")):
        return 0
    blank = _BLANK_LINE.search(data)
    return blank.start() + 1 if blank else None


def _fields(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(lower-case name, raw unfolded value) of each field of a header block, in order."""
    lines = block.replace(b"\r\n", b"\n").split(b"\n")
    for i, line in enumerate(lines):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        parts = [value]
        for cont in lines[i + 1 :]:
            if cont[:1] not in (b" ", b"\t"):
                break
            parts.append(cont)
        yield name.strip().lower(), b"".join(parts)


def message_id_header(head: bytes) -> bytes | None:
    """The unfolded, stripped value of the first Message-ID header, if any."""
    end = header_end(head)
    block = head[:end] if end is not None else head
    for name, value in _fields(block):
        if name == b"message-id":
            return value.strip() or None
    return None


def spool_id(message_id: bytes | None, raw_digest: bytes) -> str:
    """MD5 of the Message-ID value (or the raw bytes' MD5), base64url, no padding."""
    digest = hashlib.md5(message_id).digest() if message_id else raw_digest
    return _b64(digest)


def id_of_message(raw: bytes) -> str:
    return spool_id(message_id_header(raw[:HEADER_SCAN_LIMIT]), hashlib.md5(raw).digest())


def variant_id(msg_id: str, fingerprint: str) -> str:
    """The id a different message gets when msg_id is taken: the same for every
    receipt of that message, so its own re-deliveries join it."""
    return _b64(hashlib.md5(f"{msg_id} {fingerprint}".encode("ascii")).digest())


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def author_fields(block: bytes) -> bytes:
    """The author's fields of a header block, canonical: names in lower case, values
    unfolded with runs of whitespace made one space, sorted by name (order kept within
    a name), so relays that refold or reorder fields change nothing."""
    found = [
        name + b":" + _WHITESPACE.sub(b" ", value).strip()
        for name, value in _fields(block)
        if name in AUTHOR_FIELDS
    ]
    found.sort(key=lambda field: field.partition(b":")[0])
    return b"\n".join(found)


class Fingerprint:
    """The fingerprint of a message fed in chunks of any size.

    SHA-256 over the author's fields and the body with every CR removed (so a
    message stored with CRLF and one with LF line ends are the same message).
    With no blank line in the first MiB, all of it counts as body.
    """

    def __init__(self) -> None:
        self._head: bytearray | None = bytearray()
        self._fields = b""
        self._body = hashlib.sha256()

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._head is None:
            self._body.update(bytes(chunk).replace(b"\r", b""))
            return
        self._head += chunk
        if len(self._head) >= HEADER_SCAN_LIMIT or header_end(self._head) is not None:
            self._close_head()

    def _close_head(self) -> None:
        assert self._head is not None
        head, self._head = bytes(self._head), None
        end = header_end(head[:HEADER_SCAN_LIMIT])
        if end is not None:
            self._fields = author_fields(head[:end])
            head = head[end:]
        self._body.update(head.replace(b"\r", b""))

    def hexdigest(self) -> str:
        if self._head is not None:
            self._close_head()
        whole = hashlib.sha256(FINGERPRINT_VERSION)
        whole.update(hashlib.sha256(self._fields).digest())
        whole.update(self._body.digest())
        return whole.hexdigest()


def fingerprint(raw: bytes | bytearray) -> str:
    fp = Fingerprint()
    fp.update(raw)
    return fp.hexdigest()
