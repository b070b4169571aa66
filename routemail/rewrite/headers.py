"""Header fields of a raw message: split into fields, cleaned, folded and rewritten."""

from __future__ import annotations

import email.errors
import email.header
import email.message
import email.policy
import email.utils
import re
from dataclasses import dataclass, field

from routemail.author import Author
from routemail.author import author_of as read_author

MAX_LINE = 998  # RFC 5322 2.1.1, not counting the line break
FOLD_AT = 78
_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
# 8-bit bytes and control characters (NUL, bare CR, ...) that no header may carry.
_UNSENDABLE = re.compile(rb"[^\x00-\x7f]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Tried only where a line starts (unanchored, every byte of a long line would start a
# search that reads to the line's end: quadratic in the line's length).
_LONG_LINE = re.compile(rb"(?m)(?:^|(?<=\r))[^\r\n]{%d}" % (MAX_LINE + 1))
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
# Header fields whose values are address lists: 8-bit bytes in them are re-encoded
# address by address, so the addresses themselves stay readable.
ADDRESS_FIELDS = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "sender", "resent-from", "resent-to", "resent-cc"}
)
_CHUNK = 900  # longest unbroken run in a folded line, leaving room for the name
# The email package's structured parsers cost tens of microseconds a byte and more as a
# value grows (its address parser slices the rest of the value at every token; get_params
# recounts quotes from the start at every ';'). A value longer than this is never handed
# to them: an address field is rebuilt with getaddresses (linear), a Content-* field is
# treated as unreadable. Real fields are far shorter (a To of 100 addresses is ~4 KB).
MAX_PARSED = 8192
MAX_NAME_CHARS = 100
MESSAGE_ID_FIELDS = frozenset({"message-id", "in-reply-to", "references"})
_MIME_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+(?:/[A-Za-z0-9!#$%&'*+.^_`{|}~-]+)?")
_MSG_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_MSG_IDS = re.compile(
    rb"(?:\s*<[^<>\s@]+@[^<>\s@]+>)+\s*"
)  # a display name longer than this is cut, so From stays one short line


@dataclass(frozen=True)
class Field:
    """One header field as written: its name and the bytes after the colon (LF line breaks)."""

    name: str
    value: bytes  # with its leading space and any folding, without the final line break

    @property
    def key(self) -> str:
        return self.name.lower()

    def to_bytes(self) -> bytes:
        return self.name.encode("ascii") + b":" + self.value + b"\n"

    def text(self) -> str:
        """The value decoded (RFC 2047, 8-bit bytes as UTF-8 or Windows-1252), on one line."""
        return decode_words(decode_8bit(self.value))


@dataclass
class HeaderBlock:
    """The fields of one header block and where the body after it starts."""

    fields: list[Field]
    body_start: int
    problems: list[str] = field(default_factory=list)


def split_block(buf: bytes, start: int, end: int, top: bool = False) -> HeaderBlock:
    """The header fields in buf[start:end], read the way Python's email parser reads them:
    the block ends at an empty line, or at the first line that is not a header field."""
    fields: list[Field] = []
    problems: list[str] = []
    name: bytes | None = None
    lines: list[bytes] = []

    def flush() -> None:
        if name is not None:
            fields.append(Field(name.decode("ascii"), b"\n".join(lines)))

    pos = start
    first = True
    while pos < end:
        eol = buf.find(b"\n", pos, end)
        line_end, next_pos = (end, end) if eol < 0 else (eol, eol + 1)
        line = buf[pos:line_end]
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            flush()
            return HeaderBlock(fields, next_pos, problems)
        if line[:1] in (b" ", b"\t"):
            if name is None:
                problems.append("dropped a continuation line with no header field before it")
            else:
                lines.append(line)
        elif top and first and line.startswith(b"From "):
            pass  # an mbox separator line, not part of the message
        elif m := _NAME.match(line):
            flush()
            name, lines = line[: m.end() - 1], [line[m.end() :]]
        else:
            flush()
            problems.append("the header block ends without an empty line")
            return HeaderBlock(fields, pos, problems)
        first = False
        pos = next_pos
    flush()
    return HeaderBlock(fields, end, problems)


def decode_8bit(value: bytes) -> str:
    """Header bytes as text: UTF-8 when they are UTF-8, else Windows-1252 (what 8-bit
    headers from old Western mail clients nearly always are)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", errors="replace")


def _readable_addresses(f: Field) -> bool:
    """Whether Python's own header parser reads this address field without failing
    (it raises on some, such as a lone '<'): readers downstream must not crash."""
    if len(f.value) > MAX_PARSED:
        return False
    try:
        header = email.policy.strict.header_factory(f.name, f.value.decode("ascii").strip())
    except Exception:
        return False
    return not any(isinstance(d, email.errors.InvalidHeaderDefect) for d in header.defects)


def valid_date(f: Field) -> bool:
    try:
        email.utils.parsedate_to_datetime(f.value.decode("ascii").strip())
    except Exception:
        return False
    return True


def decode_words(text: str) -> str:
    """RFC 2047 encoded words decoded, whitespace collapsed; text around them kept as is
    (even when it is 8-bit text that was never encoded, which the email package rejects).
    Longer than MAX_PARSED, the words are left encoded: decode_header pops the first of its
    pieces at every step, quadratic in their number."""
    if len(text) > MAX_PARSED:
        return " ".join(text.split())
    try:
        chunks = email.header.decode_header(text)
    except Exception:
        return " ".join(text.split())
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None or charset == "unknown-8bit":
            out.append(chunk.decode("raw-unicode-escape", errors="replace"))
        else:
            try:
                out.append(chunk.decode(charset, errors="replace"))
            except LookupError:
                out.append(chunk.decode("latin-1"))
    return " ".join("".join(out).split())


def replace_field(fields: list[Field], new: Field) -> list[Field]:
    """fields with the first field of new's name replaced by new (others of that name
    dropped), or new appended when there is none."""
    out: list[Field] = []
    placed = False
    for f in fields:
        if f.key == new.key:
            if not placed:
                out.append(new)
                placed = True
        else:
            out.append(f)
    return out if placed else [*out, new]


def needs_cleaning(f: Field) -> bool:
    if f.key in MESSAGE_ID_FIELDS and not is_message_id(f.value):
        return True
    if f.key in ADDRESS_FIELDS and not _readable_addresses(f):
        return True
    return bool(_UNSENDABLE.search(f.value) or _LONG_LINE.search(f.value))


def clean(f: Field) -> Field | None:
    """The field with 8-bit bytes encoded (RFC 2047) and lines no longer than 998
    characters; None for an address field left with no usable address."""
    if not needs_cleaning(f):
        return f
    text = _CONTROL.sub("", _UNFOLD.sub("", decode_8bit(f.value)).replace("\r", " ")).strip()
    if f.key in ADDRESS_FIELDS:
        return address_field(f.name, parse_addresses(text))
    if f.key in ("content-type", "content-disposition"):
        return mime_field(f.name, text)
    if f.key in MESSAGE_ID_FIELDS:
        return message_id_field(f.name, text)
    return text_field(f.name, text)


def parse_addresses(text: str) -> list[tuple[str, str]]:
    """getaddresses, but [] where it fails: it recurses once per nested comment, so a
    few thousand '(' raise RecursionError."""
    try:
        return email.utils.getaddresses([text])
    except Exception:
        return []


def mime_field(name: str, text: str) -> Field | None:
    """Content-Type or Content-Disposition rebuilt from its parts, non-ASCII parameter
    values encoded as RFC 2231 says; None when even its first word is unreadable."""
    if len(text) > MAX_PARSED:
        return None
    try:
        src = email.message.Message()
        src[name] = text
        params = src.get_params(header=name) or []
        main = params[0][0].strip().lower() if params else ""
        if not _MIME_TOKEN.fullmatch(main):
            return None
        out = email.message.Message()
        out[name] = main
        for key, raw in params[1:]:
            value = email.utils.collapse_rfc2231_value(raw)
            if key and key.isascii() and _MIME_TOKEN.fullmatch(key):
                charset = None if value.isascii() else "utf-8"
                out.set_param(key, value, header=name, charset=charset)
        value = str(out[name])
        value.encode("ascii")
    except Exception:
        return None
    return Field(name, fold(name, value.split()))


def message_id_field(name: str, text: str) -> Field | None:
    """Message-ID, In-Reply-To or References with only its well-formed <ids> kept."""
    ids = [i for i in _MSG_ID.findall(text) if i.isascii() and i.isprintable()]
    if not ids:
        return None
    return Field(name, fold(name, ids[:1] if name.lower() == "message-id" else ids))


def is_message_id(value: bytes) -> bool:
    return bool(_MSG_IDS.fullmatch(value))


def text_field(name: str, text: str) -> Field:
    """An unstructured field holding text, RFC 2047-encoded when it is not ASCII, folded."""
    if text.isascii():
        return Field(name, fold(name, text.split()))
    try:
        encoded = email.header.Header(text, "utf-8", header_name=name).encode(linesep="\n")
    except Exception:  # the email package gives up on some inputs; fall back to plain words
        # Lines of bounded length: with maxlinelen=0 (no limit) the encoder re-encodes the
        # whole line so far at every character, quadratic in the length of the text.
        encoded = email.header.Header(text, "utf-8").encode(splitchars="", maxlinelen=FOLD_AT)
    return Field(name, fold(name, encoded.split()))


def address_field(name: str, pairs: list[tuple[str, str]]) -> Field | None:
    """A field listing addresses, display names RFC 2047-encoded; unusable addresses left out."""
    items = [format_address(n, a) for n, a in pairs if a and a.isascii() and a.isprintable()]
    return Field(name, fold(name, [i + "," for i in items[:-1]] + items[-1:])) if items else None


def format_address(name: str, address: str) -> str:
    name = " ".join(name.split())[:MAX_NAME_CHARS]
    try:
        return email.utils.formataddr((name, address), charset="utf-8")
    except Exception:
        return f"<{address}>"


def fold(name: str, words: list[str]) -> bytes:
    """Words joined by spaces into lines of at most 78 characters where possible and
    never more than 998; a word too long even for that is cut (the only change of meaning)."""
    lines: list[str] = []
    cur = ""
    width = len(name) + 2  # "Name: " on the first line, one space on the others
    for word in words:
        for chunk in [word[i : i + _CHUNK] for i in range(0, len(word), _CHUNK)]:
            if cur and width + len(cur) + 1 + len(chunk) > FOLD_AT:
                lines.append(cur)
                cur, width = chunk, 1
            else:
                cur = f"{cur} {chunk}" if cur else chunk
    if cur:
        lines.append(cur)
    return (" " + "\n ".join(lines)).encode("ascii", errors="replace") if lines else b""


# -- the rewritten fields -------------------------------------------------------------


def author_of(fields: list[Field]) -> Author:
    """The author, decided by routemail.author as routing decides it."""
    return read_author([f.value for f in fields if f.key == "from"])


def munged_from(author: Author, listname: str, list_address: str) -> Field:
    """From: 'Ann Author via volunteers <volunteers@...>' (DMARC-aligned with the list)."""
    if author.address is None:
        shown = f"unknown sender ({author.problem})"
    else:
        shown = author.name or author.address.rpartition("@")[0] or author.address
    return Field("From", b" " + format_address(f"{shown} via {listname}", list_address).encode())


def prefixed_subject(fields: list[Field], prefix: str) -> Field | None:
    """Subject with the list prefix put in front once; an encoded subject stays encoded."""
    subjects = [f for f in fields if f.key == "subject"]
    if not prefix:
        return clean(subjects[0]) if subjects else None
    if not subjects:
        return text_field("Subject", prefix)
    f = clean(subjects[0]) or Field("Subject", b"")
    if prefix.casefold() in " ".join(f.text().split()).casefold():
        return f
    rest = f.value.lstrip(b" \t")
    if prefix.isascii():
        value = prefix.encode("ascii") + (b" " + rest if rest else b"")
        return clean(Field("Subject", b" " + value))
    return text_field("Subject", f"{prefix} {f.text()}".strip())
