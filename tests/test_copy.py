"""The per-recipient copy: fields, policies, per-recipient parts and clear refusals."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from routemail import tokens
from routemail.copy import CopyError, CopyMaker
from routemail.copyheaders import LOOP_HEADER
from routemail.message import Headers
from tests.copy_support import (
    NOW,
    RECIPIENT,
    SECRET,
    SITE,
    check_crlf_only,
    check_sendable,
    identity,
    strict_parse,
)

IN = Path(__file__).parent / "data" / "copy" / "in"
PLAIN = (
    b"From: Ann Author <ann@example.com>\n"
    b"To: volunteers@lists.example.org\n"
    b"Subject: Hello\n"
    b"Date: Tue, 04 Mar 2025 09:21:00 -0800\n"
    b"Message-ID: <m1@example.com>\n"
    b"\n"
    b"Body text.\n"
)


def copy_of(raw: bytes, recipient: str = RECIPIENT, **changes: str) -> bytes:
    return CopyMaker(raw, identity(**changes)).copy_for(recipient)


def test_copies_differ_only_in_what_is_per_recipient() -> None:
    """Two recipients' copies are the same bytes apart from address and token."""
    maker = CopyMaker((IN / "05-mixed-attachment.eml").read_bytes(), identity())
    a, b = maker.copy_for("ann@example.com"), maker.copy_for("bob@example.net")
    ta = tokens.unsubscribe_token(SECRET, "volunteers", "ann@example.com", maker.issued).encode()
    tb = tokens.unsubscribe_token(SECRET, "volunteers", "bob@example.net", maker.issued).encode()
    assert a != b
    assert a.replace(b"ann@example.com", b"X").replace(ta, b"T") == b.replace(
        b"bob@example.net", b"X"
    ).replace(tb, b"T")


def test_unsubscribe_url_carries_a_verifiable_token() -> None:
    """List-Unsubscribe names the recipient, when the copy was made, and a token over
    both that the receiver can recompute."""
    maker = CopyMaker(PLAIN, identity(), now=NOW)
    msg = check_sendable(maker.copy_for("bob+lists@example.net"))
    value = str(msg["List-Unsubscribe"])
    url = value.split("<", 1)[1].split(">", 1)[0]
    assert url.startswith(
        "https://lists.example.org/unsubscribe/volunteers?a=bob%2Blists@example.net"
        f"&i={int(NOW)}&t="
    )
    token = url.rsplit("t=", 1)[1]
    expected = tokens.unsubscribe_token(SECRET, "volunteers", "bob+lists@example.net", int(NOW))
    assert tokens.matches(expected, token)
    assert not tokens.matches(
        tokens.unsubscribe_token(SECRET, "volunteers", "bob+lists@example.net", int(NOW) - 1),
        token,
    )
    assert value.endswith("<mailto:volunteers-unsubscribe@lists.example.org>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Post"] == "<mailto:volunteers@lists.example.org>"
    assert msg["List-Help"].startswith("<mailto:admin@example.org")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("author", ["ann@example.com"]),
        ("list", ["volunteers@lists.example.org"]),
        ("both", ["ann@example.com", "volunteers@lists.example.org"]),
    ],
)
def test_reply_to_follows_the_list_policy(policy: str, expected: list[str]) -> None:
    """Reply-To is the author, the list, or both, as the list's reply_to says."""
    msg = check_sendable(copy_of(PLAIN, reply_to=policy))
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == expected


def test_from_is_the_list_with_the_author_name() -> None:
    """From becomes 'Name via list <list address>'; without a name the local part shows."""
    msg = check_sendable(copy_of(PLAIN))
    assert str(msg["From"]) == "Ann Author via volunteers <volunteers@lists.example.org>"
    bare = PLAIN.replace(b"Ann Author <ann@example.com>", b"ann@example.com")
    msg = check_sendable(copy_of(bare))
    assert str(msg["From"]) == "ann via volunteers <volunteers@lists.example.org>"
    assert msg["X-Original-From"] == "ann@example.com"


def test_missing_from_gives_the_list_as_sender_with_the_reason() -> None:
    """A message without From goes out from the list, the display name saying why."""
    maker = CopyMaker(PLAIN.replace(b"From: Ann Author <ann@example.com>\n", b""), identity())
    msg = check_sendable(maker.copy_for(RECIPIENT))
    assert msg["From"].addresses[0].addr_spec == "volunteers@lists.example.org"
    assert "no From header" in msg["From"].addresses[0].display_name
    assert "Reply-To" not in msg
    assert any("From" in p for p in maker.problems)


def test_subject_prefix_is_added_once_and_encoded_subjects_stay_valid() -> None:
    """The prefix goes in front once; an RFC 2047 subject still decodes after it."""
    msg = check_sendable(copy_of(PLAIN))
    assert msg["Subject"] == "[volunteers] Hello"
    again = check_sendable(copy_of(copy_of(PLAIN)))
    assert again["Subject"] == "[volunteers] Hello"
    encoded = PLAIN.replace(b"Subject: Hello", b"Subject: =?utf-8?q?F=C3=AAte?=")
    assert check_sendable(copy_of(encoded))["Subject"] == "[volunteers] Fête"
    unicode_prefix = check_sendable(copy_of(encoded, subject_prefix="[bénévoles]"))
    assert unicode_prefix["Subject"] == "[bénévoles] Fête"


def test_arriving_list_fields_are_replaced_by_ours() -> None:
    """List-*, X-Loop, Precedence and Sender the message arrived with are not kept."""
    raw = (IN / "22-ses-dkim-arc.eml").read_bytes()
    msg = check_sendable(copy_of(raw))
    assert msg.get_all("List-Id") == ["All volunteers <volunteers.lists.example.org>"]
    assert msg.get_all(LOOP_HEADER) == ["lists.example.org"]
    assert msg.get_all("Precedence") == ["list"]
    assert msg.get_all("Sender") == ["volunteers-bounces@lists.example.org"]
    assert msg["Reply-To"] == "Ann at home <ann.home@example.com>"
    for name in ("Delivered-To", "Received-SPF", "X-SES-RECEIPT", "ARC-Message-Signature"):
        assert name not in msg


def test_routing_recognises_its_own_copies() -> None:
    """A copy carries the List-Id and loop marker that routing drops on the way back in."""
    headers = Headers.of(copy_of(PLAIN))
    assert "<volunteers.lists.example.org>" in " ".join(headers.list_ids)
    assert headers.loops == (SITE.domain,)


def test_line_ending_can_be_chosen() -> None:
    """eol=CRLF turns an LF message into a CRLF-only copy, signed body included."""
    raw = (IN / "12-pgp-signed.eml").read_bytes()
    data = CopyMaker(raw, identity(), eol=b"\r\n").copy_for(RECIPIENT)
    assert data.count(b"\n") == data.count(b"\r\n")
    body = raw.split(b"\n\n", 1)[1]
    assert body.replace(b"\n", b"\r\n") in data
    check_sendable(data)


def test_header_template_alone_decorates() -> None:
    """A list with only a header template puts it at the top of the text."""
    msg = check_sendable(copy_of(PLAIN, footer="", header="Posted to {list_address}"))
    assert msg.get_content() == "Posted to volunteers@lists.example.org\nBody text.\n"


def test_no_templates_means_no_decoration_and_no_wrapping() -> None:
    """Without header or footer the body is untouched, even for signed mail."""
    raw = (IN / "11-smime-signed.eml").read_bytes()
    data = copy_of(raw, footer="")
    assert raw.split(b"\r\n\r\n", 1)[1] == data.split(b"\r\n\r\n", 1)[1]


def test_non_ascii_description_is_encoded_in_list_id() -> None:
    """A description with accents becomes an RFC 2047 phrase in List-Id."""
    msg = check_sendable(copy_of(PLAIN, description="Bénévoles"))
    assert msg["List-Id"] == "Bénévoles <volunteers.lists.example.org>"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"\n\n\n", "empty"),
        (b"just some text without any header\n", "no header fields"),
    ],
)
def test_unusable_input_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    """Input that cannot become a copy raises CopyError saying why."""
    with pytest.raises(CopyError, match=reason) as info:
        CopyMaker(raw, identity())
    assert not info.value.unexpected


@pytest.mark.parametrize("bad", ["", "not an address", "a@b.example\r\nBcc: x@evil.example"])
def test_recipient_must_be_an_address(bad: str) -> None:
    """copy_for refuses anything but a plain address, so nothing can be injected."""
    maker = CopyMaker(PLAIN, identity())
    with pytest.raises(CopyError, match="not an email address"):
        maker.copy_for(bad)


def test_bad_template_is_refused() -> None:
    """A footer with an unknown placeholder is a CopyError naming the list."""
    with pytest.raises(CopyError, match=r"volunteers.*unknown placeholder"):
        CopyMaker(PLAIN, identity(footer="{nope}"))


HOSTILE_CHARSETS = ["quopri", "base64", "rot13", "a\x00b", '"utf-8\x00"', "x-unknown"]


@pytest.mark.parametrize("charset", HOSTILE_CHARSETS)
@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
@pytest.mark.parametrize("kind", ["plain", "html"])
def test_hostile_charset_names_never_raise(charset: str, cte: str, kind: str) -> None:
    """A charset naming a bytes codec (quopri, base64, rot13), or holding a NUL, in a
    part or in encoded words is an unknown charset: the copy is built, with its footer."""
    text = "Caf\xe9 \xe0 midi.\n".encode("latin-1")
    body = {
        "8bit": text,
        "quoted-printable": b"Caf=E9 =E0 midi.\n",
        "base64": base64.encodebytes(text),
    }[cte]
    word = charset.strip('"').encode("latin-1")
    raw = (
        b"From: =?" + word + b"?q?Ann_Author?= <ann@example.com>\n"
        b"To: volunteers@lists.example.org\n"
        b"Subject: =?" + word + b"?q?Caf=E9?=\n"
        b"Message-ID: <charset@example.com>\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: text/" + kind.encode() + b"; charset=" + charset.encode("latin-1") + b"\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\n\n" + body
    )
    msg = check_sendable(copy_of(raw))
    texts = (p.get_payload(decode=True) for p in msg.walk() if not p.is_multipart())
    assert b"You are on volunteers as member@example.net." in b"".join(texts)


def test_text_that_decodes_but_cannot_be_encoded_back_is_left_undecorated() -> None:
    """An ISO-2022-JP part the codec reads leniently but cannot write back (ESC then an
    8-bit byte) is left as sent, the header and footer wrapped around it: no crash."""
    raw = (
        b"From: Tanaka <tanaka@example.jp>\nTo: volunteers@lists.example.org\n"
        b"Subject: x\nMessage-ID: <jp@example.jp>\nMIME-Version: 1.0\n"
        b"Content-Type: text/plain; charset=ISO-2022-JP\nContent-Transfer-Encoding: 8bit\n"
        b"\n\x1b\xb2abc\n"
    )
    maker = CopyMaker(raw, identity(header="Hi {recipient}"))
    assert maker.wrapped
    assert b"\x1b\xb2abc\n" in maker.copy_for(RECIPIENT)


def qp_text(nl: bytes, body: bytes) -> bytes:
    return (
        b"From: Ann Author <ann@example.com>\n"
        b"To: volunteers@lists.example.org\n"
        b"Subject: Rota\n"
        b"Message-ID: <qp-crlf@example.com>\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n" + body
    ).replace(b"\n", nl)


@pytest.mark.parametrize("nl", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            b"Saturday: Ann=0D=0ASunday: Bob=0D=0A=\nMonday: Cy\n",
            "Saturday: Ann\nSunday: Bob\nMonday: Cy\n",
        ),
        (
            b"Saturday: Ann=0DSunday: Bob=0D=0D=0A\nMonday: Cy\n",
            "Saturday: Ann\nSunday: Bob\n\n\nMonday: Cy\n",
        ),
    ],
    ids=["encoded-crlf", "encoded-lone-cr"],
)
def test_encoded_line_breaks_in_quoted_printable_text_are_line_breaks(
    nl: bytes, body: bytes, text: str
) -> None:
    """A quoted-printable text part that encodes its line breaks (=0D=0A, or a lone
    =0D) comes out with one line ending throughout and no bare CR: the encoded breaks
    are line breaks of the decorated text."""
    data = copy_of(qp_text(nl, body))
    if nl == b"\r\n":
        check_crlf_only(data)
    else:
        assert b"\r" not in data
    msg = check_sendable(data)
    decoded = msg.get_payload(decode=True)
    assert isinstance(decoded, bytes)
    assert decoded.replace(b"\r\n", b"\n").startswith(text.encode())
    assert b"\r" not in decoded.replace(b"\r\n", b"")


def attachment_bytes(n: int) -> bytes:
    """n bytes of every value, in an order no compressor likes."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:n]


def long_line_message(nl: bytes) -> bytes:
    """A post whose text is quoted-printable with a 3,000-character line, with a PDF
    in base64 on a single line of 24,340 characters and a quoted-printable CSV whose
    encoded CR LF sits on one 1,500-character line."""
    pdf = base64.b64encode(attachment_bytes(18_255))
    assert len(pdf) == 24_340
    words = b" ".join(b"shift%d" % i for i in range(400))
    text = words[:3000] + b"=\nend of rota\n"
    csv = b"=0D=0A".join(b"row%d,=3Dvalue" % i for i in range(100))[:1500] + b"\n"
    return (
        b"From: Ann Author <ann@example.com>\n"
        b"To: volunteers@lists.example.org\n"
        b"Subject: Rota attached\n"
        b"Message-ID: <long-lines@example.com>\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="rota"\n'
        b"\n"
        b"--rota\n"
        b"Content-Type: text/plain; charset=us-ascii\n"
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n" + text + b"--rota\n"
        b'Content-Type: application/pdf; name="rota.pdf"\n'
        b"Content-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="rota.pdf"\n'
        b"\n" + pdf + b"\n"
        b"--rota\n"
        b"Content-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: quoted-printable\n"
        b'Content-Disposition: attachment; filename="rota.csv"\n'
        b"\n" + csv + b"--rota--\n"
    ).replace(b"\n", nl)


@pytest.mark.parametrize("nl", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_over_long_encoded_lines_are_rewrapped_with_the_same_decoded_bytes(nl: bytes) -> None:
    """Base64 and quoted-printable bodies with lines over 998 characters are re-wrapped:
    no line of the copy is longer than 998 octets, and every part decodes to the bytes
    the author's did (on the wire, CR LF)."""
    raw = long_line_message(nl)
    maker = CopyMaker(raw, identity())
    data = maker.copy_for(RECIPIENT)
    msg = check_sendable(data)  # lines of at most 998 octets among its checks
    original = strict_parse(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    sent = strict_parse(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    before = [p.get_payload(decode=True) for p in original.walk() if not p.is_multipart()]
    after = [p.get_payload(decode=True) for p in sent.walk() if not p.is_multipart()]
    assert after[1:] == before[1:]
    assert after[1] == attachment_bytes(18_255)
    assert isinstance(after[0], bytes) and isinstance(before[0], bytes)
    assert after[0].startswith(before[0].rstrip(b"\r\n"))  # the text, then the footer
    assert msg.get_payload()[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert any("re-wrapped a base64 application/pdf" in p for p in maker.problems)


def alternative(plain_cte: str) -> bytes:
    return (
        b"From: Ann Author <ann@example.com>\r\n"
        b"To: volunteers@lists.example.org\r\n"
        b"Subject: Rota\r\n"
        b"Message-ID: <alt-cte@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="sides"\r\n'
        b"\r\n"
        b"--sides\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: " + plain_cte.encode() + b"\r\n"
        b"\r\n"
        b"Saturday: Ann=0ASunday: Bob\r\n"
        b"--sides\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"<html><body><p>Saturday: Ann<br>Sunday: Bob</p></body></html>\r\n"
        b"--sides--\r\n"
    )


@pytest.mark.parametrize("cte", ["quoted-printable;", "quoted printable", "x-unheard-of"])
def test_alternative_with_one_unreadable_side_is_wrapped(cte: str) -> None:
    """When one side of a multipart/alternative has a transfer encoding that cannot be
    read, neither side is decorated: the message is wrapped, with the footer as its own
    part, so every reader sees it whichever side it shows."""
    raw = alternative(cte)
    maker = CopyMaker(raw, identity())
    data = maker.copy_for(RECIPIENT)
    msg = check_sendable(data)
    assert maker.wrapped
    assert maker.decorated == []
    assert msg.get_content_type() == "multipart/mixed"
    inner, footer = msg.get_payload()
    assert inner.get_content_type() == "multipart/alternative"
    assert "You are on volunteers as member@example.net." in footer.get_content()
    assert raw.split(b"\r\n\r\n", 1)[1] in data  # both sides exactly as sent


def test_alternative_with_both_sides_readable_decorates_both() -> None:
    """The same message with a well-formed encoding on both sides: both get the footer."""
    maker = CopyMaker(alternative("quoted-printable"), identity())
    msg = check_sendable(maker.copy_for(RECIPIENT))
    assert not maker.wrapped
    assert maker.decorated == ["text/plain", "text/html"]
    plain, html = msg.get_payload()
    assert "You are on volunteers" in plain.get_content()
    assert "You are on volunteers" in html.get_content()


@pytest.mark.parametrize("cte", ["", "base64", "quoted-printable"])
def test_a_multipart_loses_a_transfer_encoding_it_cannot_have(cte: str) -> None:
    """A multipart may only be 7bit, 8bit or binary (RFC 2045 6.4); an empty
    Content-Transfer-Encoding is no exception: the copy leaves it out."""
    raw = (
        "From: Ann <ann@example.com>\r\nSubject: parts\r\n"
        f"Content-Transfer-Encoding:{' ' + cte if cte else ''}\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    ).encode()
    maker = CopyMaker(raw, identity())
    msg = check_sendable(maker.copy_for(RECIPIENT))
    assert msg["Content-Transfer-Encoding"] is None
    assert f"dropped Content-Transfer-Encoding {cte or '(empty)'} from a multipart" in (
        maker.problems
    )


@pytest.mark.parametrize("width", range(70, 80))
def test_a_soft_line_break_never_starts_a_delimiter_line(width: int) -> None:
    """Text rendered into a part of a multipart with the boundary "b": quoted-printable
    breaks its long line after 75 characters, and "--b" must not begin the next line,
    where a parser would take it for the end of the part; the text decodes as it was,
    in lines of at most 76 characters."""
    raw = (
        b"From: Ann <ann@example.com>\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nhello\r\n--b--\r\n"
    )
    footer = "x" * width + "--b"
    data = CopyMaker(raw, identity(footer=footer)).copy_for(RECIPIENT)
    assert data.split(b"\r\n").count(b"--b") == 1, data
    msg = check_sendable(data)
    (text,) = [p for p in msg.walk() if p.get_content_type() == "text/plain"]
    assert text.get_content().replace("\r\n", "\n").endswith(footer + "\n")
    assert max(len(line) for line in data.split(b"\r\n")[-12:]) <= 76


@pytest.mark.parametrize("cte", ["8bit", "quoted-printable"])
def test_a_rewrapped_long_line_never_starts_a_delimiter_line(cte: str) -> None:
    """A line over 998 characters is re-encoded (or re-wrapped) as quoted-printable; no
    soft break in it starts a line with "--b" in a multipart whose boundary is b."""
    long_line = "x" * 75 * 14 + "--b"  # its last soft break comes right before "--b"
    raw = (
        "From: Ann <ann@example.com>\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        f"{long_line}\r\n--b--\r\n"
    ).encode()
    data = CopyMaker(raw, identity(header="", footer="")).copy_for(RECIPIENT)
    assert data.split(b"\r\n").count(b"--b") == 1
    (text,) = [p for p in check_sendable(data).walk() if p.get_content_type() == "text/plain"]
    assert text.get_content().rstrip("\r\n") == long_line
