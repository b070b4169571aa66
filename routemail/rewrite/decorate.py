"""The list's header and footer put into a text/plain or text/html part, in its own
charset and transfer encoding, with only the rendered text left to fill in per recipient."""

from __future__ import annotations

import binascii
import codecs
import email.message
import re
from dataclasses import dataclass
from typing import AnyStr, Literal

from routemail.rewrite.headers import Field, fold, replace_field
from routemail.rewrite.mime import Part
from routemail.rewrite.qp import quoted_printable

Kind = Literal["plain", "html"]
Slot = Literal["header", "footer"]
# A charset is handled byte-wise when ASCII text means the same bytes in it.
_ASCII_PROBE = "Az09 <>/=+~-_.:;\"'\n"
# Where the header and footer go in HTML: after the first <body ...> tag, before the
# first </body> or </html> after it. Not `<body\b[^>]*>`: on `<body` repeated with no
# `>` that pattern scans to the end from every occurrence (quadratic: a 1 MB part took
# a minute). The first `<body` then the first `>` after it is the same match, found in
# two linear scans.
_BODY_OPEN = re.compile(rb"<body\b", re.IGNORECASE)
_BODY_OPEN_STR = re.compile(r"<body\b", re.IGNORECASE)
# Linear: `\s*` stops at the next `<`, so no two attempts scan the same bytes.
_BODY_CLOSE = re.compile(rb"</body\s*>|</html\s*>", re.IGNORECASE)
_BODY_CLOSE_STR = re.compile(r"</body\s*>|</html\s*>", re.IGNORECASE)
# Anchored at line starts: unanchored, a search tries every byte of a 998-byte line
# and reads on to its end each time (500 steps a byte on such lines).
_LONG_LINE = re.compile(rb"(?m)^[^\n]{999}")
BASE64_LINE = 76
_BASE64_CHUNK = BASE64_LINE // 4 * 3  # input bytes that make one full base64 line


class Undecoratable(Exception):
    """This part cannot carry the header and footer; the reason says why."""


@dataclass(frozen=True)
class Texts:
    """The header and footer rendered for one recipient (empty when the list has none)."""

    header_plain: str
    footer_plain: str
    header_html: str
    footer_html: str

    def get(self, kind: str, slot: str) -> str:
        if kind == "plain":
            return self.header_plain if slot == "header" else self.footer_plain
        return self.header_html if slot == "header" else self.footer_html


def html_block(slot: Slot, fragment: str) -> str:
    if not fragment:
        return ""
    if slot == "header":
        return f'<div class="list-header">{fragment}</div>\n'
    return f'<div class="list-footer"><hr>\n{fragment}</div>\n'


def text_codec(charset: str) -> codecs.CodecInfo | None:
    """The text codec a charset names; None for an unknown name, one Python cannot look
    up (a NUL in it), or one naming a bytes-to-bytes codec (quopri, base64, rot13)."""
    try:
        codec = codecs.lookup(charset)
    except (LookupError, ValueError):
        return None
    return codec if getattr(codec, "_is_text_encoding", True) else None


def ascii_compatible(codec: codecs.CodecInfo) -> bool:
    if codec.name.startswith(("iso2022", "iso-2022", "utf-16", "utf-32", "utf-7", "hz")):
        return False
    try:
        return _ASCII_PROBE.encode(codec.name) == _ASCII_PROBE.encode("ascii")
    except Exception:
        return False


class DecoratedPart:
    """A text part with the header and footer slots, ready to be filled per recipient.

    The body is cut into pieces: constant ones, decoded and (for quoted-printable)
    re-encoded once here, and the header/footer slots encoded per recipient. Base64
    bodies are re-encoded per recipient after the first slot, since every byte after
    it shifts; the constant run before it is encoded once."""

    def __init__(
        self, buf: bytes, nl: bytes, part: Part, kind: Kind, probe: Texts, top: bool
    ) -> None:
        self.nl = nl
        self.kind = kind
        self.probe = probe
        self.part = part
        self.top = top
        info = part.info
        cte = info.cte or "7bit"
        if cte not in ("7bit", "8bit", "binary", "quoted-printable", "base64"):
            raise Undecoratable(f"its transfer encoding {cte!r} is unknown")
        body = b"".join(part.new_body) if part.new_body else buf[part.body_start : part.end]  # type: ignore[arg-type]
        if cte == "base64":
            try:
                data = binascii.a2b_base64(body)
            except binascii.Error as exc:
                raise Undecoratable(f"its base64 body is damaged ({exc})") from None
            self.text_nl = b"\r\n" if b"\r\n" in data else b"\n"
            data = data.replace(b"\r\n", b"\n")
        elif cte == "quoted-printable":
            # An encoded CR LF (=0D=0A) or lone CR (=0D) is a line break like any other:
            # left as CR, re-encoding would pass it on as a bare CR in the copy.
            decoded = binascii.a2b_qp(body.replace(b"\r\n", b"\n"))
            data = decoded.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self.text_nl = b"\n"
        else:
            data = body.replace(b"\r\n", b"\n")
            self.text_nl = b"\n"

        charset = info.charset or "us-ascii"
        codec = text_codec(charset)
        if codec is None:
            if not data.isascii():
                raise Undecoratable(f"its charset {charset!r} is unknown")
            codec = codecs.lookup("ascii")
        self.errors = "xmlcharrefreplace" if kind == "html" else "strict"
        self.new_charset: str | None = None
        if codec.name == "ascii" and not data.isascii():
            # Labelled (or defaulting to) ASCII but 8-bit: name what it most likely is.
            self.new_charset = _guess_charset(data)
            codec = codecs.lookup(self.new_charset)
        needs_utf8 = False
        for slot in ("header", "footer"):
            try:
                probe.get(kind, slot).encode(codec.name, errors=self.errors)
            except UnicodeEncodeError:
                needs_utf8 = True
        if ascii_compatible(codec) and not needs_utf8:
            pieces = self._cut_bytes(data)
        else:
            try:
                text = data.decode(codec.name)
            except (UnicodeDecodeError, LookupError) as exc:
                if not ascii_compatible(codec):
                    raise Undecoratable(f"its text does not decode as {charset}: {exc}") from None
                # Footer characters the charset lacks are replaced; the body stays as sent.
                self.errors = "replace"
                pieces = self._cut_bytes(data)
            else:
                if needs_utf8 or codec.name.startswith(("utf-16", "utf-32")):
                    codec = codecs.lookup("utf-8")
                    self.new_charset = "utf-8"
                try:
                    pieces = self._cut_text(text, codec.name)
                except UnicodeEncodeError as exc:  # decoded leniently, no way back
                    raise Undecoratable(
                        f"its text does not encode back as {charset}: {exc}"
                    ) from None
        self.codec = codec.name

        has_8bit = any(isinstance(p, bytes) and not p.isascii() for p in pieces) or any(
            not probe.get(kind, s).encode(self.codec, errors="replace").isascii()
            for s in ("header", "footer")
        )
        long_lines = any(isinstance(p, bytes) and _LONG_LINE.search(p) for p in pieces)
        if cte in ("7bit", "8bit", "binary") and (long_lines or (cte == "7bit" and has_8bit)):
            self.cte = "quoted-printable"
        else:
            self.cte = "8bit" if cte == "binary" else cte

        self.fields = self._fields(part)
        self.segments = self._segments(pieces)

    # -- cutting the decoded body around the slots --------------------------------

    def _cut_bytes(self, data: bytes) -> list[bytes | str]:
        if self.kind == "plain":
            body = data if not data or data.endswith(b"\n") else data + b"\n"
            return ["header", body, "footer"]
        a, b = _html_body(data, _BODY_OPEN, _BODY_CLOSE, b">")
        head, middle, tail = data[:a], data[a:b], data[b:]
        return [
            head + b"\n" if head else b"",
            "header",
            middle if not middle or middle.endswith(b"\n") else middle + b"\n",
            "footer",
            tail,
        ]

    def _cut_text(self, text: str, codec: str) -> list[bytes | str]:
        if self.kind == "plain":
            body = text if not text or text.endswith("\n") else text + "\n"
            return ["header", body.encode(codec), "footer"]
        a, b = _html_body(text, _BODY_OPEN_STR, _BODY_CLOSE_STR, ">")
        head, middle, tail = text[:a], text[a:b], text[b:]
        return [
            (head + "\n").encode(codec) if head else b"",
            "header",
            (middle if not middle or middle.endswith("\n") else middle + "\n").encode(codec),
            "footer",
            tail.encode(codec),
        ]

    # -- the part's header block ------------------------------------------------------

    def _fields(self, part: Part) -> list[Field]:
        fields = list(part.new_fields if part.new_fields is not None else part.fields)
        original_cte = part.info.cte or "7bit"
        if self.new_charset:
            ctypes = [f for f in fields if f.key == "content-type"]
            value = _with_charset(ctypes[0] if ctypes else None, part.info.ctype, self.new_charset)
            fields = replace_field(fields, Field("Content-Type", value))
        if self.cte != original_cte:
            cte = Field("Content-Transfer-Encoding", b" " + self.cte.encode())
            fields = replace_field(fields, cte)
        return fields

    # -- the body: constant bytes and slots ---------------------------------------

    def encode_slot(self, text: str) -> bytes:
        data = text.encode(self.codec, errors=self.errors if self.errors != "strict" else "replace")
        if self.text_nl != b"\n" and self.cte == "base64":
            data = data.replace(b"\n", self.text_nl)
        return data

    def _segments(self, pieces: list[bytes | str]) -> list[bytes | tuple[bytes | str, ...]]:
        """Body segments: bytes, or a tuple of pieces (bytes and slot names) that a
        recipient's texts complete; render() turns such a tuple into bytes."""
        nl = self.nl
        # A slot whose template is empty stays empty for every recipient: leave it out.
        pieces = [
            p for p in pieces if p != b"" and (isinstance(p, bytes) or self.probe.get(self.kind, p))
        ]
        if self.cte == "base64":
            if self.text_nl != b"\n":
                pieces = [
                    p.replace(b"\n", self.text_nl) if isinstance(p, bytes) else p for p in pieces
                ]
            lead = b""
            while pieces and isinstance(pieces[0], bytes):
                lead += pieces.pop(0)  # type: ignore[operator]
            cut = len(lead) // _BASE64_CHUNK * _BASE64_CHUNK
            out: list[bytes | tuple[bytes | str, ...]] = []
            if cut:
                out.append(_b64_lines(lead[:cut], nl) + nl)
            out.append((lead[cut:], *pieces))
            return out
        segs: list[bytes | tuple[bytes | str, ...]] = []
        for p in pieces:
            if isinstance(p, bytes):
                enc = quoted_printable(p) if self.cte == "quoted-printable" else p
                segs.append(enc.replace(b"\n", nl) if nl != b"\n" else enc)
            else:
                segs.append((p,))
        return segs

    def render(self, seg: tuple[bytes | str, ...], texts: Texts) -> bytes:
        nl = self.nl
        if self.cte == "base64":
            raw = b"".join(
                p if isinstance(p, bytes) else self.encode_slot(texts.get(self.kind, p))
                for p in seg
            )
            return _b64_lines(raw, nl) + nl if raw else b""
        slot = seg[0]
        data = self.encode_slot(texts.get(self.kind, slot))  # type: ignore[arg-type]
        if self.cte == "quoted-printable":
            data = quoted_printable(data)
        return data.replace(b"\n", nl) if nl != b"\n" else data


def _html_body(
    data: AnyStr, opening: re.Pattern[AnyStr], closing: re.Pattern[AnyStr], gt: AnyStr
) -> tuple[int, int]:
    """Where the header and where the footer go in an HTML text: after the first
    <body ...> tag (or at the start), before the first closing tag after that."""
    start = 0
    if (tag := opening.search(data)) is not None and (end := data.find(gt, tag.end())) >= 0:
        start = end + 1
    close = closing.search(data, start)
    return start, close.start() if close else len(data)


def _guess_charset(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "windows-1252"
    return "utf-8"


def _b64_lines(data: bytes, nl: bytes) -> bytes:
    enc = binascii.b2a_base64(data, newline=False)
    return nl.join([enc[i : i + BASE64_LINE] for i in range(0, len(enc), BASE64_LINE)])


def _with_charset(f: Field | None, ctype: str, charset: str) -> bytes:
    """The Content-Type value with its charset parameter set (other parameters kept)."""
    msg = email.message.Message()
    try:
        msg["Content-Type"] = (
            f.value.decode("ascii", errors="surrogateescape").strip() if f else ctype
        )
        msg.set_param("charset", charset)
        value = str(msg["Content-Type"])
        value.encode("ascii")
    except Exception:
        value = f'{ctype}; charset="{charset}"'
    return fold("Content-Type", value.split())
