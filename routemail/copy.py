"""The per-recipient copy: parse and decorate once per message and list, then fill in
only what differs for each recipient (address, unsubscribe URL, rendered templates).

Pure: bytes and settings in, bytes out. The copy is assembled from segments: shared
byte strings (most of them views into the original message, never copied) and a few
slots that render a recipient's bytes (routemail.copyparts); its header fields are
kept, dropped and added by routemail.copyheaders. What the copy contains is described in
docs/deliverability.md and docs/routing.md ("Delivery"); choices made here besides:

- A message without a usable From gets the list as its sender, with the reason in the
  display name ("unknown sender (no From header) via volunteers").
- A message without Date or Message-ID gets them (the Message-ID is derived from the
  message bytes, the same for every recipient); one with neither To nor Cc gets the
  list address as To.
- The author's From is kept as X-Original-From.
- A part that cannot carry the header and footer (unknown charset or transfer encoding,
  signed, encrypted, no text at all) is left untouched and the whole body is wrapped in
  a multipart/mixed with the header and footer as their own text/plain parts.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time

from routemail import copyheaders, tokens
from routemail.copyheaders import ListIdentity
from routemail.copyparts import (
    DecoratedSlot,
    Recipient,
    Segment,
    Slot,
    UnsubscribeField,
    WrapperText,
    merge,
)
from routemail.errors import RoutemailError
from routemail.rewrite.decorate import DecoratedPart, Kind, Texts, Undecoratable, html_block
from routemail.rewrite.headers import Field
from routemail.rewrite.mime import Part, TooComplex, scan
from routemail.templates import Template
from routemail.transports.wire import Prepared, WireParts

CRLF = b"\r\n"
LF = b"\n"
# Bounds the work spent on header fields (a few of them go through the email package's
# parsers, which cost tens of microseconds a byte): real header blocks, trace and
# signatures included, stay far below it; the SMTP servers in front of SES refuse
# bigger ones (Postfix's header_size_limit is 100 KiB).
MAX_HEADER_BYTES = 256 * 1024
# Recipient addresses as routing hands them over (normalized); anything else could
# smuggle line breaks into the header block.
_RECIPIENT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}")


class CopyError(RoutemailError):
    """The message cannot be turned into a sendable copy."""

    def __init__(self, message: str, *, unexpected: bool = False) -> None:
        super().__init__(message)
        self.unexpected = unexpected  # a failure of this code, not of the message


class CopyMaker:
    """Built once per (message, list); copy_for() is the per-recipient hot path.

    eol forces the line ending of the copy (default: the message's own); now is the
    time used for a missing Date (default: when the maker is built). `problems` says
    what was repaired, `decorated` where the header and footer went."""

    def __init__(
        self,
        raw: bytes,
        identity: ListIdentity,
        *,
        eol: bytes | None = None,
        now: float | None = None,
    ) -> None:
        self.identity = identity
        self.problems: list[str] = []
        self.decorated: list[str] = []
        self.wrapped = False
        try:
            self.header = Template(identity.mlist.header)
            self.footer = Template(identity.mlist.footer)
        except ValueError as exc:
            raise CopyError(f"list {identity.mlist.name}: bad header or footer: {exc}") from None
        try:
            now = time.time() if now is None else now
            self.issued = int(now)  # in every unsubscribe link: the copy's age
            self._build(raw, eol, now)
        except CopyError:
            raise
        except Exception as exc:  # a bug here must hold one message, not stop the run
            raise CopyError(
                f"could not build the copy for list {identity.mlist.name} "
                f"({type(exc).__name__}: {exc}); the message is held",
                unexpected=True,
            ) from exc

    # -- once per message and list ------------------------------------------------------

    def _build(self, raw: bytes, eol: bytes | None, now: float) -> None:
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise CopyError(f"a message is bytes, not {type(raw).__name__}")
        raw = bytes(raw)
        if not raw.strip():
            raise CopyError("the message is empty; there is nothing to send")
        buf, nl = _line_endings(raw, eol)
        self.nl = nl
        self._buf = buf
        mv = memoryview(buf)
        try:
            top = scan(buf, nl, 0, len(buf), top=True)
        except TooComplex as exc:
            raise CopyError(f"{exc}; no copy is made") from None
        if not top.fields:
            raise CopyError(
                "the message has no header fields: it must start with lines like "
                "'From: ...', then an empty line, then the body"
            )
        if top.body_start > MAX_HEADER_BYTES:
            raise CopyError(
                f"the header block is {top.body_start} bytes; a copy is made only of a "
                f"message whose header block is at most {MAX_HEADER_BYTES} bytes"
            )
        self.problems.extend(p for part in top.walk() for p in part.problems)

        probe = self._texts("someone@example.org", "https://example.org/unsubscribe")
        self._html = False
        decorated: dict[int, DecoratedPart] = {}
        if self.header or self.footer:
            decorated = self._decorate(buf, nl, top, probe)
            self.wrapped = not decorated
        self._decorated = decorated

        segs: list[Segment] = []
        base = decorated[id(top)].fields if id(top) in decorated else (top.new_fields or top.fields)
        boundary = _boundary(buf) if self.wrapped else b""
        self._header_block(base, segs, now, raw, boundary)
        if self.wrapped:
            self._wrapped_body(top, segs, mv, boundary)
        else:
            segs.append(self._b(b"\n"))
            self._emit_body(top, segs, mv)
        self._segments: list[Segment | bytes] = []
        self._wire: WireParts | None = None
        self._dynamic: list[tuple[int, Slot]] = []
        for s in merge(segs):
            if not isinstance(s, bytes | memoryview):
                self._dynamic.append((len(self._segments), s))
            self._segments.append(s)

    def _decorate(self, buf: bytes, nl: bytes, top: Part, probe: Texts) -> dict[int, DecoratedPart]:
        """The target parts with the header and footer; none when one of them cannot
        carry them (one side of a multipart/alternative, say: a reader shown that side
        would see the message without them), and the message is wrapped instead."""
        decorated: dict[int, DecoratedPart] = {}
        kinds: list[str] = []
        failed = False
        for part, kind in _targets(top):
            try:
                d = DecoratedPart(buf, nl, part, kind, probe, top=part is top)
            except Undecoratable as exc:
                self.problems.append(f"text/{kind} part left undecorated: {exc}")
                failed = True
                continue
            decorated[id(part)] = d
            kinds.append(kind)
            self.decorated.append(f"text/{kind}" + (f" ({d.new_charset})" if d.new_charset else ""))
        if failed and decorated:
            self.problems.append("the other alternatives left undecorated too")
            self.decorated = []
            return {}
        self._html = "html" in kinds
        return decorated

    def _b(self, data: bytes) -> bytes:
        """Bytes built with LF line breaks, in the copy's line ending."""
        return data.replace(LF, self.nl) if self.nl != LF else data

    def _texts(self, recipient: str, url: str) -> Texts:
        ident = self.identity
        values = {
            "list": ident.mlist.name,
            "list_address": ident.address,
            "description": ident.mlist.description,
            "recipient": recipient,
            "unsubscribe_url": url,
            "site": ident.site.name,
        }
        header = self.header.render(values) if self.header else ""
        footer = self.footer.render(values) if self.footer else ""
        html = getattr(self, "_html", True)
        return Texts(
            header_plain=_line(header),
            footer_plain=_line(footer),
            header_html=html_block("header", self.header.render_html(values))
            if header and html
            else "",
            footer_html=html_block("footer", self.footer.render_html(values))
            if footer and html
            else "",
        )

    def _header_block(
        self, base: list[Field], segs: list[Segment], now: float, raw: bytes, boundary: bytes
    ) -> None:
        block = copyheaders.header_block(
            base, self.identity, self.wrapped, boundary, now, raw, self.problems
        )
        self._moved = block.moved
        segs.append(self._b(b"".join(f.to_bytes() for f in block.before)))
        segs.append(UnsubscribeField(self.identity.unsubscribe_address, self.nl))
        segs.append(self._b(b"".join(f.to_bytes() for f in block.after)))

    def _wrapped_body(
        self, top: Part, segs: list[Segment], mv: memoryview, boundary: bytes
    ) -> None:
        self.problems.append(
            "header and footer added as parts of a multipart/mixed around the message"
        )
        segs.append(self._b(b"\n"))
        if self.header:
            segs.append(WrapperText(boundary, lambda t: t.header_plain, self.nl))
        inner = b"".join(f.to_bytes() for f in self._moved)
        segs.append(self._b(b"--" + boundary + b"\n" + inner + b"\n"))
        self._emit_body(top, segs, mv)
        segs.append(self._b(b"\n"))
        if self.footer:
            segs.append(WrapperText(boundary, lambda t: t.footer_plain, self.nl))
        segs.append(self._b(b"--" + boundary + b"--\n"))

    def _emit(self, part: Part, segs: list[Segment], mv: memoryview) -> None:
        d = self._decorated.get(id(part))
        if d is not None:
            segs.append(self._b(b"".join(f.to_bytes() for f in d.fields) + b"\n"))
            for seg in d.segments:
                segs.append(seg if isinstance(seg, bytes) else DecoratedSlot(d, seg))
            return
        if part.new_fields is not None:
            segs.append(self._b(b"".join(f.to_bytes() for f in part.new_fields) + b"\n"))
        else:
            segs.append(mv[part.header_start : part.body_start])
        self._emit_body(part, segs, mv)

    def _emit_body(self, part: Part, segs: list[Segment], mv: memoryview) -> None:
        d = self._decorated.get(id(part))
        if d is not None:  # the top-level part: its fields are in the message header
            for seg in d.segments:
                segs.append(seg if isinstance(seg, bytes) else DecoratedSlot(d, seg))
        elif part.new_body is not None:
            segs.extend(part.new_body)  # type: ignore[arg-type]
        elif part.children or part.unread_from is not None:
            pos = part.body_start
            for child in part.children:
                gap = mv[pos : child.header_start]
                segs.append(gap)
                if gap[-1:] != b"\n":  # a delimiter line cut off at the end of the message
                    segs.append(self.nl)
                self._emit(child, segs, mv)
                pos = child.end
            if not part.close_missing:
                segs.append(mv[pos : part.end])
                return
            if part.unread_from is not None:
                segs.append(mv[pos : part.end])
            segs.append(self._b(b"\n--" + part.boundary + b"--\n"))
        else:
            segs.append(mv[part.body_start : part.end])

    # -- once per recipient ---------------------------------------------------------------

    def copy_for(self, recipient: str) -> Prepared:
        """The copy for recipient (a normalized address), as bytes ready to send; its
        smtp_data() is the same copy in SMTP DATA form, joined from prepared pieces."""
        if not isinstance(recipient, str) or not _RECIPIENT.fullmatch(recipient):
            raise CopyError(f"{recipient!r} is not an email address a copy can be made for")
        ident = self.identity
        url = tokens.unsubscribe_url(
            ident.site, ident.secret, ident.mlist.name, recipient, self.issued
        )
        r = Recipient(recipient, url, self._texts(recipient, url))
        parts = self._segments.copy()
        filled = [dyn.render(r) for _, dyn in self._dynamic]
        for (i, _), piece in zip(self._dynamic, filled, strict=True):
            parts[i] = piece
        return Prepared(
            b"".join(parts),  # type: ignore[arg-type]
            lambda: self._wire_parts().pieces_for(filled),
            lambda: self._wire_parts().ascii and all(piece.isascii() for piece in filled),
        )

    def _wire_parts(self) -> WireParts:
        """The shared segments in SMTP DATA form, converted on the first copy sent
        over SMTP (the outbox and SES take the copy as it is)."""
        if self._wire is None:
            self._wire = WireParts(
                [s if isinstance(s, bytes | memoryview) else None for s in self._segments]
            )
        return self._wire


def _line(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _line_endings(raw: bytes, eol: bytes | None) -> tuple[bytes, bytes]:
    """The message with one kind of line ending throughout, and that line ending."""
    first = raw.find(b"\n")
    nl = CRLF if first > 0 and raw[first - 1] == 13 else LF
    if eol is not None and eol not in (CRLF, LF):
        raise CopyError(f"line ending {eol!r}: expected b'\\r\\n' or b'\\n'")
    target = eol or nl
    cr, lf = raw.count(b"\r"), raw.count(b"\n")
    consistent = cr == 0 if nl == LF else (cr == lf == raw.count(CRLF))
    if consistent and target == nl:
        return raw, nl
    text = raw.replace(CRLF, LF).replace(b"\r", LF)
    return (text.replace(LF, CRLF) if target == CRLF else text), target


def _boundary(buf: bytes) -> bytes:
    """A boundary that does not occur in the message: the first free number after a
    prefix derived from the message. The numbers taken are collected in one pass, so a
    message full of would-be boundaries costs one scan, not one per candidate."""
    prefix = b"--=_routemail_" + hashlib.sha256(buf[:65536]).hexdigest()[:20].encode() + b"_"
    runs = re.findall(re.escape(prefix) + rb"(\d{1,7})", buf)
    taken = {run[:i] for run in runs for i in range(1, len(run) + 1)}  # "_1" is in "_10"
    n = next(n for n in itertools.count() if str(n).encode() not in taken)
    return prefix[2:] + str(n).encode()


def _targets(top: Part) -> list[tuple[Part, Kind]]:
    """The parts to decorate: the text of a single-part message, both sides of a
    multipart/alternative, the first text of a multipart/mixed (or any other multipart)."""

    def leaf(part: Part) -> list[tuple[Part, Kind]]:
        if part.info.disposition == "attachment":
            return []
        if part.ctype == "text/plain":
            return [(part, "plain")]
        if part.ctype == "text/html":
            return [(part, "html")]
        return []

    def walk(part: Part) -> list[tuple[Part, Kind]]:
        if not part.children:
            return leaf(part)
        if part.ctype == "multipart/alternative":
            return [t for child in part.children for t in walk(child)]
        for child in part.children:
            if found := walk(child):
                return found
        return []

    return walk(top)
