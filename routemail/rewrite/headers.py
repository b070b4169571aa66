"""Header fields of a raw message: split into fields, cleaned, folded and rewritten."""

from __future__ import annotations

import email.errors
import email.header
import email.message
import email.policy
import email.utils
import re
from dataclasses import dataclass, field

from routemail import addresses
from routemail.author import Author
from routemail.author import author_of as read_author
from routemail.rewrite import encode
from routemail.rewrite.encode import MAX_LINE, fold

_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
# 8-bit bytes, control characters (NUL, bare CR, ...) and line breaks that do not fold
# (a LF not followed by a space would start a field of its own): no header may carry them.
_UNSENDABLE = re.compile(rb"[^\x00-\x7f]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|\n(?![ \t])")
# A field name so long that not even one encoded word fits beside it on a line.
MAX_FIELD_NAME = MAX_LINE - 2 - 75
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
# The email package's structured parsers cost tens of microseconds a byte and more as a
# value grows (its address parser slices the rest of the value at every token; get_params
# recounts quotes from the start at every ';'). A value longer than this is never handed
# to them: an address field is rebuilt with getaddresses (linear), a Content-* field is
# treated as unreadable. Real fields are far shorter (a To of 100 addresses is ~4 KB).
MAX_PARSED = 8192
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
    """RFC 2047 encoded words decoded, on one line without control characters (encode.
    one_line); text around them kept as is (even when it is 8-bit text that was never
    encoded, which the email package rejects). Longer than MAX_PARSED, the words are left
    encoded: decode_header pops the first of its pieces at every step, quadratic in their
    number."""
    if len(text) > MAX_PARSED:
        return encode.one_line(text)
    try:
        chunks = email.header.decode_header(text)
    except Exception:
        return encode.one_line(text)
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None or charset == "unknown-8bit":
            out.append(chunk.decode("raw-unicode-escape", errors="replace"))
        else:
            try:
                out.append(chunk.decode(charset, errors="replace"))
            except (LookupError, ValueError):  # unknown, not a text codec, or a NUL in it
                out.append(chunk.decode("latin-1"))
    return encode.one_line("".join(out))


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
    return bool(
        _UNSENDABLE.search(f.value)
        or _first_line_too_long(f)
        or _LONG_LINE.search(f.value)
        or _hides_unwanted(f.value)
    )


def _first_line_too_long(f: Field) -> bool:
    """Whether "Name:" and the value's first line make more than 998 octets."""
    if len(f.name) + 1 + len(f.value) <= MAX_LINE:
        return False
    eol = f.value.find(b"\n")
    return len(f.name) + 1 + (eol if eol >= 0 else len(f.value)) > MAX_LINE


def _hides_unwanted(value: bytes) -> bool:
    """Whether RFC 2047 encoded words in the value decode to a line break or a control
    character, which a reader that decodes and writes the field again would let out."""
    if b"=?" not in value:
        return False
    if len(value) > MAX_PARSED:
        return True  # too long to decode (see decode_words): rewritten with words literal
    try:
        chunks = email.header.decode_header(_UNFOLD.sub("", decode_8bit(value)))
    except Exception:
        return True  # words the email package cannot read: rewrite them
    for chunk, charset in chunks:
        if charset is None or isinstance(chunk, str):
            continue  # text outside encoded words: the byte checks cover it
        try:
            text = chunk.decode(charset, errors="replace")
        except LookupError:
            text = chunk.decode("latin-1")
        if encode.has_unwanted(text):
            return True
    return False


def clean(f: Field) -> Field | None:
    """The field as it may be sent: text RFC 2047-encoded by the header encoder, no control
    character (not even one hidden in an encoded word), no line over 998 octets with the
    name; None for a field with nothing usable left (an address field without a usable
    address, a name too long for any line)."""
    if not needs_cleaning(f):
        return f
    if len(f.name) > MAX_FIELD_NAME:
        return None
    text = _CONTROL.sub("", _UNFOLD.sub("", decode_8bit(f.value)).replace("\r", " ")).strip()
    if f.key in ADDRESS_FIELDS:
        pairs = parse_addresses(text)
        return address_field(f.name, [(decode_words(n), a) for n, a in pairs])
    if f.key in ("content-type", "content-disposition"):
        return mime_field(f.name, text)
    if f.key in MESSAGE_ID_FIELDS:
        return message_id_field(f.name, text)
    return text_field(f.name, decode_words(text))


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
    """Message-ID, In-Reply-To or References with only its well-formed <ids> kept (an id
    too long to share a line with the field name is not well-formed)."""
    longest = MAX_LINE - len(name) - 2
    ids = [
        i for i in _MSG_ID.findall(text) if i.isascii() and i.isprintable() and len(i) <= longest
    ]
    if not ids:
        return None
    return Field(name, fold(name, ids[:1] if name.lower() == "message-id" else ids))


def is_message_id(value: bytes) -> bool:
    return bool(_MSG_IDS.fullmatch(value))


def text_field(name: str, text: str) -> Field:
    """An unstructured field showing text, through the header encoder."""
    return Field(name, encode.unstructured(name, text))


def address_field(name: str, pairs: list[tuple[str, str]], utf8: bool = False) -> Field | None:
    """A field listing addresses with their display names, through the header encoder;
    addresses that cannot stand in a header are left out (None when none is left), UTF-8
    ones unless utf8 (the message carries UTF-8 headers, RFC 6532)."""
    value = encode.address_list(name, pairs, utf8)
    return Field(name, value) if value is not None else None


# -- the rewritten fields -------------------------------------------------------------


def author_of(fields: list[Field]) -> Author:
    """The author, decided by routemail.author as routing decides it."""
    return read_author([f.value for f in fields if f.key == "from"])


def munged_from(author: Author, listname: str, list_address: str) -> Field:
    """From: 'Ann Author via volunteers <volunteers@...>' (DMARC-aligned with the list)."""
    if author.address is None:
        shown = f"unknown sender ({author.problem})"
    else:
        local, _ = addresses.split(author.address)
        shown = author.name or addresses.unquote_local(local)
    value = encode.address_list("From", [(f"{shown} via {listname}", list_address)])
    if value is None:
        raise ValueError(f"list address {list_address!r} cannot stand in a header")
    return Field("From", value)


def prefixed_subject(fields: list[Field], prefix: str) -> Field | None:
    """Subject with the list prefix put in front once; an encoded subject stays encoded."""
    subjects = [f for f in fields if f.key == "subject"]
    prefix = encode.one_line(prefix)
    if not prefix:
        return clean(subjects[0]) if subjects else None
    if not subjects:
        return text_field("Subject", prefix)
    f = clean(subjects[0]) or Field("Subject", b"")
    if prefix.casefold() in " ".join(f.text().split()).casefold():
        return f
    rest = f.value.lstrip(b" \t")
    if prefix.isascii() and "=?" not in prefix:
        value = prefix.encode("ascii") + (b" " + rest if rest else b"")
        return clean(Field("Subject", b" " + value))
    return text_field("Subject", f"{prefix} {f.text()}".strip())
