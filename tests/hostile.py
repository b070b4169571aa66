"""Message shapes that make naive scanners slow: each built to a given size, for the
linear-time tests and bench/linear.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

HEAD = (
    b"From: Ann Author <ann@example.com>\n"
    b"To: volunteers@lists.example.org\n"
    b"Subject: Saturday\n"
    b"Date: Mon, 10 Mar 2025 09:46:40 +0000\n"
    b"Message-ID: <hostile@example.com>\n"
    b"MIME-Version: 1.0\n"
)
PART_BYTES = 60  # roughly, per part of many_parts and level of deep_nesting


def fill(unit: bytes, size: int) -> bytes:
    """unit repeated to exactly size bytes."""
    return (unit * (size // len(unit) + 1))[:size]


def _single(ctype: bytes, body: bytes, cte: bytes = b"") -> bytes:
    extra = b"Content-Transfer-Encoding: " + cte + b"\n" if cte else b""
    return HEAD + b"Content-Type: " + ctype + b"\n" + extra + b"\n" + body


def _html(unit: bytes) -> Callable[[int], bytes]:
    return lambda size: _single(b"text/html; charset=utf-8", fill(unit, size))


def _html_utf16(size: int) -> bytes:
    # Decoded to text before the footer goes in: the str patterns, not the bytes ones.
    body = fill("<body".encode("utf-16-le"), size)
    return _single(b"text/html; charset=utf-16le", body)


def _html_base64(size: int) -> bytes:
    import base64

    encoded = base64.encodebytes(fill(b"<body", size * 3 // 4))
    return _single(b"text/html; charset=utf-8", encoded, b"base64")


def _many_parts(size: int) -> bytes:
    # Each part's fields differ, so no parsing result can be reused from the last part.
    parts = [
        b'--b\nContent-Type: text/plain; charset="x-%d"\n\npart\n' % i
        for i in range(max(1, size // PART_BYTES))
    ]
    return HEAD + b"Content-Type: multipart/mixed; boundary=b\n\n" + b"".join(parts) + b"--b--\n"


def _deep_nesting(size: int) -> bytes:
    # No closing delimiters: each level is a multipart left open, to be repaired.
    levels = max(1, size // PART_BYTES)
    opening = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(levels)
    )
    return HEAD + opening + b"\ninnermost\n"


def _header(name: bytes, unit: bytes, prefix: bytes = b"") -> Callable[[int], bytes]:
    """A message whose field name holds prefix and unit repeated (it replaces HEAD's)."""

    def build(size: int) -> bytes:
        field = name + b": " + prefix + fill(unit, size) + b"\n"
        others = [line for line in HEAD.split(b"\n") if line and not line.startswith(name)]
        if name != b"Content-Type":
            others.append(b"Content-Type: text/plain")
        return field + b"".join(line + b"\n" for line in others) + b"\nbody\n"

    return build


@dataclass(frozen=True)
class Shape:
    name: str
    build: Callable[[int], bytes]
    in_header: bool = False  # the bulk of it is in the header block


SHAPES = [
    Shape(
        "benign_text", lambda n: _single(b"text/plain", fill(b"The quick brown fox jumps.\n", n))
    ),
    Shape("body_open", _html(b"<body")),
    Shape("html_open", _html(b"<html")),
    Shape("body_open_space", _html(b"<body ")),
    Shape("body_close_unclosed", lambda n: _single(b"text/html", b"<body>" + fill(b"</body ", n))),
    Shape("unclosed_tags", _html(b'<a href="x ')),
    Shape("unclosed_comment", _html(b"<!--")),
    Shape("body_open_utf16", _html_utf16),
    Shape("body_open_base64", _html_base64),
    Shape("long_line_text", lambda n: _single(b"text/plain", fill(b"x", n))),
    Shape("long_line_html", _html(b"<p>x")),
    Shape("lines_of_998", lambda n: _single(b"text/plain", fill(b"y" * 998 + b"\n", n))),
    Shape("many_parts", _many_parts),
    Shape("deep_nesting", _deep_nesting),
    Shape("long_subject", _header(b"Subject", b"word "), in_header=True),
    Shape("encoded_words", _header(b"Subject", b"=?x?q?"), in_header=True),
    Shape("utf8_subject", _header(b"Subject", "é".encode()), in_header=True),
    Shape("many_addresses", _header(b"To", b"a@example.net, "), in_header=True),
    Shape("nested_comments", _header(b"From", b"("), in_header=True),
    Shape("quoted_pairs", _header(b"From", b'"\\'), in_header=True),
    Shape("param_semicolons", _header(b"Content-Type", b";", b'text/plain; a="'), in_header=True),
    Shape("references", _header(b"References", b"<a@example.com> "), in_header=True),
]
BY_NAME = {s.name: s for s in SHAPES}
