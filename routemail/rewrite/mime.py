"""MIME structure of a raw message, found in place: offsets into the bytes, not copies."""

from __future__ import annotations

import copy
import email.message
import email.parser
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from routemail.rewrite.headers import (
    MAX_PARSED,
    Field,
    clean,
    needs_cleaning,
    replace_field,
    split_block,
)
from routemail.rewrite.longlines import rewrapped
from routemail.rewrite.qp import quoted_printable

MAX_DEPTH = 30  # deeper nesting is left as it is, unread
# Parts read, per message; the rest are sent as they are, unread. Bounds the work of a
# message of tiny parts, each with fields of its own, to about a second (the email
# package reads each part's fields in ~100 us); real messages have a few dozen parts.
MAX_PARTS = 10_000
UNREAD = "application/octet-stream"
OPAQUE = frozenset({"multipart/signed", "multipart/encrypted"})
ENCODINGS = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})
MULTIPART_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
# Anchored at line starts (the buffer's line endings are uniform, so a line never
# starts after a bare CR): unanchored, a search reads on to the end of the line from
# every byte of it, 500 steps a byte on lines just under the limit.
_LONG_LINE = re.compile(rb"(?m)^[^\r\n]{999}")


class TooComplex(Exception):
    """The message's structure cannot be made sendable within the bounds of reading it."""


@dataclass
class ContentInfo:
    """What the Content-* fields of one entity say."""

    ctype: str = "text/plain"
    charset: str | None = None
    boundary: bytes | None = None
    cte: str = ""  # lower-cased, "" when absent
    disposition: str | None = None


@dataclass
class Part:
    """One MIME entity: buf[header_start:body_start] is its header block (with the empty
    line), buf[body_start:end] its body. Repairs replace pieces without copying the rest."""

    fields: list[Field]
    header_start: int
    body_start: int
    end: int
    info: ContentInfo
    children: list[Part] = field(default_factory=list)
    close_missing: bool = False  # a multipart whose closing delimiter is absent
    unread_from: int | None = None  # a multipart's parts from here on are sent unread
    boundary: bytes = b""
    new_fields: list[Field] | None = None  # rewritten header block, when repaired
    new_body: list[object] | None = None  # rewritten body segments, when repaired
    problems: list[str] = field(default_factory=list)
    broken: bool = False  # its MIME structure needed a repair (not just a re-encoding)

    @property
    def ctype(self) -> str:
        return self.info.ctype

    def walk(self) -> list[Part]:
        out = [self]
        for c in self.children:
            out.extend(c.walk())
        return out


def _read_content_fields(data: bytes, default: str) -> ContentInfo:
    """The Content-* fields read with the email package (compat32 never raises on reading;
    the guard is for whatever it does on hostile input)."""
    info = ContentInfo(ctype=default)
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
        msg.set_default_type(default)
        info.ctype = msg.get_content_type()
        charset = msg.get_content_charset()
        info.charset = charset if charset and charset.isascii() else None
        boundary = msg.get_boundary()
        if boundary:
            info.boundary = boundary.encode("ascii", errors="surrogateescape")
        info.cte = str(msg.get("content-transfer-encoding", "")).strip().lower()
        info.disposition = msg.get_content_disposition()
    except Exception:
        return ContentInfo(ctype=default)
    return info


@dataclass
class _Reading:
    """What reading one message's structure may still spend: parts left to read, and
    the Content-* fields read so far (the parser costs ~100 us a part, and a message's
    parts mostly repeat their fields)."""

    parts_left: int = MAX_PARTS
    open_signed: bool = False  # read the parts of signed and encrypted multiparts too
    seen: dict[tuple[bytes, str], ContentInfo] = field(default_factory=dict)

    def content_info(self, fields: list[Field], default: str) -> ContentInfo:
        data = b"".join(f.to_bytes() for f in fields if f.key.startswith("content-"))
        if not data:
            return ContentInfo(ctype=default)
        key = (data, default)
        if key not in self.seen:
            self.seen[key] = _read_content_fields(data, default)
        return copy.copy(self.seen[key])  # callers change the info of their part


def scan(
    buf: bytes,
    nl: bytes,
    start: int,
    end: int,
    *,
    top: bool = False,
    depth: int = 0,
    default: str = "text/plain",
    reading: _Reading | None = None,
    open_signed: bool = False,
) -> Part:
    """The entity in buf[start:end] and, for multiparts, its children, repaired where
    Python's email parser would report a defect (so every copy re-parses cleanly).
    Signed and encrypted multiparts are kept whole unless open_signed (for reading
    what they hold, never for a copy)."""
    reading = _Reading(open_signed=open_signed) if reading is None else reading
    block = split_block(buf, start, end, top=top)
    reading.parts_left -= 1
    fields, problems = block.fields, list(block.problems)
    if sum(len(f.value) for f in fields if f.key.startswith("content-")) > MAX_PARSED:
        # Never handed to the email package's parameter parser (quadratic): dropped, so
        # the part is read, and sent, as the default type.
        fields = [f for f in fields if not f.key.startswith("content-")]
        problems.append(f"dropped Content-* fields longer than {MAX_PARSED} bytes")
    if not top and any(needs_cleaning(f) for f in fields):
        # The same rule as the message's own fields: printable ASCII, lines of at most
        # 998 octets with the name, no control character hidden in an encoded word.
        fields = [c for f in fields if (c := clean(f)) is not None]
        problems.append("repaired the header fields of a MIME part")
    part = Part(fields, start, block.body_start, end, reading.content_info(fields, default))
    part.problems.extend(problems)
    if fields is not block.fields or (block.problems and not top):
        part.new_fields = list(fields)
        part.broken = True
    if not part.ctype.startswith("multipart/"):
        _fix_long_lines(buf, nl, part)
        return part
    if depth >= MAX_DEPTH:
        part.problems.append(f"MIME parts nested deeper than {MAX_DEPTH} levels sent unread")
        _unread(buf, nl, part)
        return part
    if part.info.boundary is None or not _split(buf, nl, part, depth, reading):
        _as_text(buf, part)
        return part
    fields = part.new_fields or part.fields
    has_cte = any(f.key == "content-transfer-encoding" for f in fields)
    if has_cte and part.info.cte not in MULTIPART_ENCODINGS:  # an empty one is invalid too
        part.broken = True
        shown = part.info.cte or "(empty)"
        part.problems.append(f"dropped Content-Transfer-Encoding {shown} from a multipart")
        part.new_fields = [
            f for f in part.new_fields or part.fields if f.key != "content-transfer-encoding"
        ]
    if part.ctype in OPAQUE and not reading.open_signed:
        if any(p.broken for p in part.walk()):
            # A signature over a broken structure cannot verify: repair it like any other.
            part.problems.append(f"{part.ctype} with a broken structure: repaired, not kept intact")
        else:
            part.children = []  # kept byte for byte, never looked into again
    return part


def _split(buf: bytes, nl: bytes, part: Part, depth: int, reading: _Reading) -> bool:
    """Find part's children between its boundary delimiters; False when there are none."""
    boundary = part.info.boundary
    assert boundary is not None
    starts: list[tuple[int, int]] = []  # (delimiter line start, content start)
    close: int | None = None
    for line_start, line_end, closing in _delimiters(buf, boundary, part.body_start, part.end):
        if closing:
            close = line_start
            break
        starts.append((line_start, min(line_end + 1, part.end)))
    if not starts:
        return False
    default = "message/rfc822" if part.ctype == "multipart/digest" else "text/plain"
    ends = [s for s, _ in starts[1:]] + [close if close is not None else part.end]
    for (line_start, content), next_delimiter in zip(starts, ends, strict=True):
        if reading.parts_left <= 0:
            _unread_tail(buf, part, line_start)
            break
        child_end = (
            next_delimiter
            if next_delimiter == part.end and close is None
            else max(content, next_delimiter - len(nl))
        )
        child = scan(buf, nl, content, child_end, depth=depth + 1, default=default, reading=reading)
        if child.header_start == child.end:
            # An empty part: give it the empty header block and line break it lacks.
            child.new_fields, child.new_body, child.broken = [], [nl], True
        part.children.append(child)
    part.boundary = boundary
    if close is None:
        part.broken = part.close_missing = True
        part.problems.append("added the missing closing boundary of a multipart")
    return True


def _delimiters(
    buf: bytes, boundary: bytes, start: int, end: int
) -> Iterator[tuple[int, int, bool]]:
    """The delimiter lines of boundary in buf[start:end] (RFC 2046 5.1.1: "--boundary",
    "--" more for the closing one, then only spaces or tabs): where each starts, where
    its line ends, and whether it closes. Found with bytes.find, not a regex: every
    level of nesting searches the bytes of all the levels inside it, and find reads
    them some fifty times faster."""
    needle = b"--" + boundary
    pos = start
    while (at := buf.find(needle, pos, end)) >= 0:
        eol = buf.find(b"\n", at, end)
        eol = end if eol < 0 else eol
        pos = eol
        if at > 0 and buf[at - 1] != 10:  # not at the start of a line
            pos = at + 1
            continue
        rest = buf[at + len(needle) : eol]
        rest = rest[:-1] if rest.endswith(b"\r") else rest
        if rest.startswith(b"--") and not rest[2:].strip(b" \t"):
            yield at, eol, True
        elif not rest.strip(b" \t"):
            yield at, eol, False


def _as_text(buf: bytes, part: Part) -> None:
    """A multipart whose boundary never occurs is relabelled as the text it really is."""
    body = buf[part.body_start : part.end]
    if body.isascii():
        charset = "us-ascii"
    else:
        try:
            body.decode("utf-8")
            charset = "utf-8"
        except UnicodeDecodeError:
            charset = "windows-1252"
    part.broken = True
    part.problems.append(f"{part.ctype} without its boundary in the body: sent as text/plain")
    new = Field("Content-Type", f' text/plain; charset="{charset}"'.encode())
    part.new_fields = replace_field(part.new_fields or part.fields, new)
    part.info = ContentInfo("text/plain", charset, None, part.info.cte, part.info.disposition)
    if part.info.cte not in ENCODINGS:
        part.new_fields = [f for f in part.new_fields if f.key != "content-transfer-encoding"]
        part.info.cte = ""


def _unread(buf: bytes, nl: bytes, part: Part) -> None:
    """A multipart nested too deep is sent as application/octet-stream, so that no
    reader looks into it either (a reader that did would find what was never repaired)."""
    cte = part.info.cte if part.info.cte in MULTIPART_ENCODINGS else ""
    fields = [f for f in part.new_fields or part.fields if f.key != "content-transfer-encoding"]
    if cte:
        fields.append(Field("Content-Transfer-Encoding", f" {cte}".encode()))
    part.new_fields = replace_field(fields, Field("Content-Type", f" {UNREAD}".encode()))
    part.info = ContentInfo(UNREAD, cte=cte)
    part.broken = True
    _fix_long_lines(buf, nl, part)


def _unread_tail(buf: bytes, part: Part, start: int) -> None:
    """The parts of a multipart from start on are past the message's MAX_PARTS: sent
    byte for byte, unread (a reader sees them as the author sent them). Their lines are
    still checked, as one scan: a line over 998 octets cannot be sent."""
    if _LONG_LINE.search(buf, start, part.end):
        raise TooComplex(f"more than {MAX_PARTS} MIME parts, with lines over 998 octets past them")
    part.unread_from = start
    part.problems.append(f"more than {MAX_PARTS} MIME parts: the rest sent unread")


def _fix_long_lines(buf: bytes, nl: bytes, part: Part) -> None:
    """A body with lines over 998 characters is made sendable: one sent as is (7bit,
    8bit) is re-encoded, quoted-printable for text and base64 for anything else; a
    base64 or quoted-printable one is re-wrapped (longlines.py)."""
    import binascii

    cte = part.info.cte
    if part.ctype.startswith("message/") or cte not in ENCODINGS | {""}:
        return
    if not _LONG_LINE.search(buf, part.body_start, part.end):
        return
    body = buf[part.body_start : part.end]
    if cte in ("base64", "quoted-printable"):
        part.new_body = [rewrapped(body, nl, cte, part.ctype.startswith("text/"))]
        part.problems.append(f"re-wrapped a {cte} {part.ctype} body with lines over 998 characters")
        return
    if part.ctype.startswith("text/"):
        encoded = quoted_printable(body.replace(b"\r\n", b"\n"))
        cte = "quoted-printable"
    else:
        b64 = binascii.b2a_base64(body, newline=False)
        encoded = b"\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
        cte = "base64"
    if nl != b"\n":
        encoded = encoded.replace(b"\n", nl)
    new = Field("Content-Transfer-Encoding", b" " + cte.encode())
    part.new_fields = replace_field(part.new_fields or part.fields, new)
    part.new_body = [encoded]
    part.info.cte = cte
    part.problems.append(f"re-encoded a {part.ctype} body with lines over 998 characters as {cte}")
