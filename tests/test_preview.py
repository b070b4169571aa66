"""A held message's preview shows its text, lists its attachments and keeps its HTML
inert, whatever the message holds."""

from __future__ import annotations

import base64
import re

import pytest

from routemail import safehtml
from routemail.preview import MAX_TEXT_CHARS, preview

HOSTILE_HTML = """\
<html><head><title>hidden title</title>
<style>body { background: url(http://127.0.0.1:9/style.png) }</style>
<link rel="stylesheet" href="http://127.0.0.1:9/sheet.css">
<meta http-equiv="refresh" content="0; url=http://127.0.0.1:9/away">
<base href="http://127.0.0.1:9/">
</head><body onload="alert(1)">
<p onclick="alert(2)">Dear moderator,</p>
<script>alert(3)</script>
<img src="http://127.0.0.1:9/pixel.png" onerror="alert(4)" alt="pixel">
<a href="javascript:alert(5)">click me</a>
<a href=" JaVaScRiPt:alert(6)">again</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCg3KTwvc2NyaXB0Pg==">data link</a>
<a href="/moderate/logout">sign out</a>
<a href="//127.0.0.1:9/protocol-relative">relative</a>
<div style="background-image: url('http://127.0.0.1:9/bg.png')">styled</div>
<svg><image href="http://127.0.0.1:9/svg.png"/><script>alert(8)</script></svg>
<iframe src="http://127.0.0.1:9/frame"></iframe>
<object data="http://127.0.0.1:9/object"></object>
<form action="http://127.0.0.1:9/form"><input name="q"><button formaction="x">Go</button></form>
<video src="http://127.0.0.1:9/v.mp4" poster="http://127.0.0.1:9/poster.png"></video>
<table background="http://127.0.0.1:9/table.png"><tr><td>cell</td></tr></table>
<a href="https://example.com/ok">a fine link</a>
<!-- <script>alert(9)</script> -->
</body></html>
"""

# What no sanitised HTML may hold: every way a page runs code or loads from elsewhere.
ACTIVE = re.compile(
    r"(?i)<\s*(script|style|img|link|meta|base|svg|iframe|object|form|input|button|video"
    r"|image)\b|\bon[a-z]+\s*=|javascript:|data:|url\(|\bsrc\s*=|\bbackground\s*=|\baction\s*="
    r"|127\.0\.0\.1"
)


def message(*lines: str, body: bytes | str = "") -> bytes:
    head = "\r\n".join(lines).encode()
    data = body.encode() if isinstance(body, str) else body
    return head + b"\r\n\r\n" + data


def html_message(html: str, charset: str = "utf-8") -> bytes:
    return message(
        "From: Mallory <mallory@example.net>",
        "To: volunteers@lists.example.org",
        "Subject: hostile",
        f'Content-Type: text/html; charset="{charset}"',
        body=html.encode(charset),
    )


def test_hostile_html_keeps_nothing_active() -> None:
    """Scripts, event handlers, remote images, styles with url(), javascript: and data:
    links, relative links, frames, forms: none survive sanitising."""
    shown = preview(html_message(HOSTILE_HTML))
    assert ACTIVE.search(shown.html) is None, shown.html
    assert "Dear moderator," in shown.html
    assert '<a href="https://example.com/ok" rel="noopener noreferrer nofollow">' in shown.html
    assert "alert" not in shown.html
    assert "hidden title" not in shown.html


def test_hostile_html_as_text() -> None:
    """An HTML-only message's text is what a reader would read, without the code."""
    text = preview(html_message(HOSTILE_HTML)).text
    assert "Dear moderator," in text
    assert "a fine link <https://example.com/ok>" in text
    assert "click me" in text
    assert "alert" not in text
    assert "background" not in text
    assert "javascript" not in text.lower()


def test_sanitising_obfuscated_markup() -> None:
    """Markup hidden by entities, broken tags or unusual case is read as a browser
    reads it, and still kept inert."""
    tricky = (
        '<a href="jav&#x09;ascript:alert(1)">tab</a>'
        '<a href="&#106;avascript:alert(1)">entity</a>'
        "<scr<script>ipt>alert(1)</script>"
        "<IMG SRC=http://127.0.0.1:9/x.png>"
        '<img src="x" onerror\n=alert(1)>'
        "<<p>nested</p>"
        '<div style="x:expression(alert(1))">ie</div>'
    )
    clean = safehtml.sanitise(tricky)
    assert ACTIVE.search(clean) is None, clean
    assert "expression" not in clean


def test_plain_and_html_alternative() -> None:
    """With both, the text is the plain part, the HTML the sanitised HTML part; an
    attachment is listed with its decoded size and never shown."""
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 10
    raw = message(
        "From: Ann <ann@example.com>",
        "To: volunteers@lists.example.org",
        "Cc: =?utf-8?q?Zo=C3=AB?= <zoe@example.com>",
        "Subject: =?utf-8?q?Caf=C3=A9_meeting?=",
        "Date: Wed, 02 Dec 2026 10:00:00 +0000",
        "Message-ID: <m1@example.com>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer"',
        body=(
            "--outer\r\n"
            'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
            "--alt\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            "See you at the caf=C3=A9.\r\n"
            "--alt\r\n"
            "Content-Type: text/html; charset=utf-8\r\n\r\n"
            "<p>See you at the <b>caf\u00e9</b>.<img src=http://127.0.0.1:9/t.png></p>\r\n"
            "--alt--\r\n"
            "--outer\r\n"
            'Content-Type: application/pdf; name="ignored.pdf"\r\n'
            'Content-Disposition: attachment; filename="../../etc/agenda.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(pdf).decode()
            + "--outer\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Disposition: attachment; filename*=utf-8''notes%20%C3%A9t%C3%A9.txt\r\n\r\n"
            "a text attachment is not the body\r\n"
            "--outer--\r\n"
        ),
    )
    shown = preview(raw)
    assert shown.text == "See you at the caf\u00e9."
    assert shown.html == "<p>See you at the <b>caf\u00e9</b>.</p>"
    assert dict(shown.headers) == {
        "From": "Ann <ann@example.com>",
        "To": "volunteers@lists.example.org",
        "Cc": "Zo\u00eb <zoe@example.com>",
        "Subject": "Caf\u00e9 meeting",
        "Date": "Wed, 02 Dec 2026 10:00:00 +0000",
        "Message-ID": "<m1@example.com>",
    }
    assert [a.as_json() for a in shown.attachments] == [
        {"name": "agenda.pdf", "type": "application/pdf", "size": len(pdf)},
        {"name": "notes \u00e9t\u00e9.txt", "type": "text/plain", "size": 33},
    ]
    assert shown.problems == []
    assert shown.as_json()["headers"]["subject"] == "Caf\u00e9 meeting"


@pytest.mark.parametrize(
    ("charset", "body", "text", "problem"),
    [
        ("utf-8", "caf\u00e9".encode("latin-1"), "caf\u00e9", "read as windows-1252"),
        ("x-unknown", "caf\u00e9".encode(), "caf\u00e9", "read as utf-8"),
        ("us-ascii", "caf\u00e9".encode(), "caf\u00e9", None),
        ("rot13", b"plain", "plain", "read as utf-8"),  # a codec, but not a charset
        ("utf-16", "caf\u00e9".encode("utf-16"), "caf\u00e9", None),
        ("utf-8", b"\x81\x8d\x8f\xff", "\ufffd", "unreadable charset"),
        ('utf-8"><script>', b"fine", "fine", "read as utf-8"),
    ],
)
def test_wrong_charsets(charset: str, body: bytes, text: str, problem: str | None) -> None:
    """A wrong or unknown charset still gives readable text, and says so."""
    raw = message(
        "From: ann@example.com",
        "Subject: charset",
        f"Content-Type: text/plain; charset={charset}",
        body=body,
    )
    shown = preview(raw)
    assert text in shown.text
    if problem is None:
        assert shown.problems == []
    else:
        assert any(problem in p for p in shown.problems), shown.problems


def test_controls_and_bidi_overrides_are_not_shown() -> None:
    """Terminal escapes and text-reordering characters in headers, body or file names
    are made visible replacement marks, so neither a terminal nor a page obeys them."""
    raw = message(
        "From: ann@example.com",
        "Subject: =?utf-8?q?a=1B[2Jb=E2=80=AEc?=",
        'Content-Type: multipart/mixed; boundary="b"',
        body=(
            "--b\r\nContent-Type: text/plain\r\n\r\nbell\x07 escape\x1b[31m rtl\u202eevil\r\n"
            '--b\r\nContent-Type: application/octet-stream; name="x\u202egpj.exe"\r\n\r\n'
            "MZ\r\n--b--\r\n"
        ).encode(),
    )
    shown = preview(raw)
    assert "\x1b" not in shown.text and "\x07" not in shown.text and "\u202e" not in shown.text
    assert "\x1b" not in dict(shown.headers)["Subject"]
    assert "\u202e" not in dict(shown.headers)["Subject"]
    assert "\u202e" not in shown.attachments[0].name


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"no header block at all, just text",
        b'Content-Type: multipart/mixed; boundary="never"\r\n\r\nno boundary here\r\n',
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nno boundary parameter\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
        b"\r\nunclosed multipart",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64@@@=",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=",
        b"Content-Type: text/plain; charset*=''%ff%fe\r\n\r\nrfc2231 junk",
        b"Content-Type: ;;;==\r\nContent-Disposition: attachment; filename=\r\n\r\nx",
        b"Content-Type: message/rfc822\r\n\r\nFrom: inner\r\n\r\ninner body",
        b"Subject: " + b"=?utf-8?q?" + b"=FF" * 5000 + b"?=\r\n\r\nbody",
        b"From: \xff\xfe\x00\r\n\r\n\xff\x00body",
    ],
)
def test_malformed_mime_never_raises(raw: bytes) -> None:
    """Broken structure, encodings and headers give a preview, never an exception."""
    shown = preview(raw)
    assert ACTIVE.search(shown.html) is None
    assert isinstance(shown.text, str)


def test_deep_nesting_is_bounded() -> None:
    """Nesting past the reading limit is listed as one unread attachment."""
    depth = 60
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    closing = "".join(f"\r\n--b{i}--" for i in reversed(range(depth)))
    nested = ("From: ann@example.com\r\n" + opening + "\r\ndeep text" + closing).encode()
    shown = preview(nested)
    assert any("nested deeper" in p for p in shown.problems), shown.problems
    assert "deep text" not in shown.text


def test_huge_text_part_is_cut() -> None:
    """A text body far past the limit shows its beginning and says it was cut."""
    body = ("x" * 99 + "\n") * 40_000  # 4 MB
    shown = preview(message("From: ann@example.com", "Content-Type: text/plain", body=body))
    assert len(shown.text) == MAX_TEXT_CHARS
    assert any("not shown" in p for p in shown.problems)


def test_huge_html_part_is_cut_and_sanitised() -> None:
    """Megabytes of unclosed tags are sanitised within the bound."""
    html = "<div><b><i><script>" * 200_000
    shown = preview(html_message(html))
    assert ACTIVE.search(shown.html) is None
    assert any("not shown" in p for p in shown.problems)


def test_signed_message_is_read_inside() -> None:
    """A multipart/signed message shows the text it signs and lists its signature."""
    raw = message(
        "From: ann@example.com",
        'Content-Type: multipart/signed; protocol="application/pgp-signature";'
        ' boundary="s"; micalg=pgp-sha256',
        body=(
            "--s\r\nContent-Type: text/plain\r\n\r\nsigned words\r\n"
            '--s\r\nContent-Type: application/pgp-signature; name="signature.asc"\r\n\r\n'
            "-----BEGIN PGP SIGNATURE-----\r\n--s--\r\n"
        ),
    )
    shown = preview(raw)
    assert shown.text.strip() == "signed words"
    assert [a.content_type for a in shown.attachments] == ["application/pgp-signature"]
    assert shown.attachments[0].name == "signature.asc"
