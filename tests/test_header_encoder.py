"""The header encoder: hostile text in, header fields that say exactly that text out.

Each value is read back with the email package (policy.default decodes RFC 2047 and,
on Python without the CVE-2024-6923 fix, writes decoded line breaks out raw when it
serialises), so a value that hides a line break would show up as an extra field.
"""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routemail.copy import CopyMaker
from routemail.rewrite import encode
from routemail.rewrite.headers import Field, clean
from tests.copy_support import RECIPIENT, check_sendable, identity

ATTACK = "=?l1?q?x=0D=0ABcc:_v@ex.net=0D=0A=0D=0AGo:_evil.example?="
HOSTILE = [
    ATTACK,
    "line\r\nBcc: v@ex.net\r\n\r\nbody",
    "separator\u2028Bcc: v@ex.net",
    "paragraph\u2029Bcc: v@ex.net",
    "next line\x85Bcc: v@ex.net",
    "escape \x1b[31mred\x1b[0m, delete \x7f, nul \x00, bell \x07",
    "bidi \u202eevil\u202c and isolate \u2066x\u2069",
    "Grüße aus München =?utf-8?q?=0D=0A?=",
]
# Every header line a well-formed message may carry: printable ASCII after the name.
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[\x20-\x7e]*|[ \t][\x20-\x7e]*")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parsed(name: str, value: bytes) -> email.message.EmailMessage:
    raw = name.encode("ascii") + b":" + value + b"\n\nbody\n"
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def assert_one_field(name: str, value: bytes) -> None:
    """value makes exactly one field of printable ASCII lines of at most 998 octets."""
    lines = (name.encode("ascii") + b":" + value).split(b"\n")
    for line in lines:
        assert len(line) <= encode.MAX_LINE, len(line)
        assert _FIELD_LINE.fullmatch(line), line
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:])


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_subject_is_one_field_showing_the_text_literally(text: str) -> None:
    """An encoded-word lookalike, line breaks of every kind and control characters make
    one Subject field; read back it shows the text as typed, minus the controls, and
    writing it out again adds no field."""
    value = encode.unstructured("Subject", f"Confirm: {text}")
    assert_one_field("Subject", value)
    msg = parsed("Subject", value)
    assert str(msg["Subject"]) == encode.one_line(f"Confirm: {text}")
    assert not encode.has_unwanted(str(msg["Subject"]))
    again = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert sorted(again.keys()) == ["Subject"]
    assert "Go: evil.example" not in again.get_content()


def test_the_reported_subject_reads_back_as_typed() -> None:
    """The subject from the report is shown literally, its =?...?= not decoded."""
    value = encode.unstructured("Subject", ATTACK)
    assert str(parsed("Subject", value)["Subject"]) == ATTACK


@pytest.mark.parametrize("text", HOSTILE)
def test_display_name_never_carries_controls_or_a_second_address(text: str) -> None:
    """A hostile display name gives one mailbox, the given address, with no control
    character in the field."""
    value = encode.address_list("From", [(text, "ann@example.com")])
    assert value is not None
    assert_one_field("From", value)
    (addr,) = parsed("From", value)["From"].addresses
    assert addr.addr_spec == "ann@example.com"
    assert not encode.has_unwanted(addr.display_name)


def test_addresses_that_cannot_stand_in_a_header_are_left_out() -> None:
    """An address with a line break, a space or an angle bracket is dropped, never
    written: one with nothing usable left gives no field at all."""
    hostile = ["a@b.example\r\nBcc: v@ex.net", "a b@example.com", "a>@example.com", ""]
    assert encode.address_list("To", [("", a) for a in hostile]) is None
    with pytest.raises(ValueError):
        encode.mailbox("Ann", "ann@example.com\nBcc: v@ex.net")


@pytest.mark.parametrize("name", ["X-Tracking-Blob", "X-" + "N" * 300])
@pytest.mark.parametrize("size", [70, 900, 997, 5000])
def test_long_token_is_split_into_encoded_words_that_read_back_whole(name: str, size: int) -> None:
    """A token too long for a 998-octet line with its field name is encoded as several
    encoded words, which a reader joins back into the same token."""
    token = "AbC-0=9/" * (size // 8) + "x" * (size % 8)
    value = encode.unstructured(name, token)
    assert_one_field(name, value)
    assert str(parsed(name, value)[name]) == token


def test_incoming_field_too_long_for_its_line_is_rewritten_whole() -> None:
    """An incoming 997-character X-Tracking-Blob (1,014 octets with its name) is
    rewritten within 998 octets a line and still reads as the same token."""
    token = "A" * 997
    cleaned = clean(Field("X-Tracking-Blob", b" " + token.encode()))
    assert cleaned is not None
    assert_one_field("X-Tracking-Blob", cleaned.value)
    assert str(parsed("X-Tracking-Blob", cleaned.value)["X-Tracking-Blob"]) == token


def test_incoming_encoded_word_hiding_a_line_break_is_rewritten() -> None:
    """An incoming Subject whose encoded word decodes to CR LF is decoded, cleaned and
    encoded again: no reader can get the line break back out of it."""
    f = Field("Subject", b" " + ATTACK.encode())
    cleaned = clean(f)
    assert cleaned is not None and cleaned != f
    shown = str(parsed("Subject", cleaned.value)["Subject"])
    assert shown == "x Bcc: v@ex.net Go: evil.example"
    again = email.message_from_bytes(
        parsed("Subject", cleaned.value).as_bytes(), policy=email.policy.default
    )
    assert "Bcc" not in again


def test_field_name_too_long_for_any_line_is_dropped() -> None:
    """A field whose name leaves no room for a value on a 998-octet line is left out."""
    assert clean(Field("X-" + "N" * 990, b" value")) is None


@pytest.mark.parametrize(
    ("author", "shown"),
    [
        # U+2028 and a bidi override: the author is known, the name shown cleaned.
        (b"=?utf-8?q?Ann=E2=80=AE_x=E2=80=A8Bcc=3A_evil?=", "Ann x Bcc: evil via volunteers"),
        # ESC, DEL and NUL: no author can be read; the list's own name says why.
        (
            b"=?utf-8?q?Ann=1B=5B31m=7F=00?=",
            "unknown sender (a From header that does not parse) via volunteers",
        ),
    ],
)
def test_copy_of_hostile_message_keeps_every_header_line_clean(author: bytes, shown: str) -> None:
    """A post whose author name carries line separators or control characters, whose
    Subject hides CR LF in an encoded word, with a 997-character X-Tracking-Blob, to a
    list whose description holds control characters: every header line of the copy is
    printable ASCII of at most 998 octets, and each value reads back cleaned."""
    raw = (
        b"From: " + author + b" <ann@example.com>\n"
        b"To: volunteers@lists.example.org\n"
        b"Subject: " + ATTACK.encode() + b"\n"
        b"X-Tracking-Blob: " + b"A" * 997 + b"\n"
        b"Message-ID: <hostile@example.com>\n"
        b"Date: Tue, 04 Mar 2025 09:21:00 -0800\n"
        b"\n"
        b"Body.\n"
    )
    copy = CopyMaker(raw, identity(description="All\x1b[2J volunteers\r\nBcc: x@evil")).copy_for(
        RECIPIENT
    )
    msg = check_sendable(copy)
    head = copy.split(b"\n\n", 1)[0]
    for line in head.split(b"\n"):
        assert len(line) <= encode.MAX_LINE
        assert _FIELD_LINE.fullmatch(line), line
    assert "Bcc" not in msg
    assert str(msg["X-Tracking-Blob"]) == "A" * 997
    assert str(msg["Subject"]) == "[volunteers] x Bcc: v@ex.net Go: evil.example"
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (shown, "volunteers@lists.example.org")
    list_id = '"All [2J volunteers Bcc: x@evil" <volunteers.lists.example.org>'
    assert str(msg["List-Id"]) == list_id


@SETTINGS
@given(
    name=st.sampled_from(["Subject", "X-Tracking-Blob", "X-" + "N" * 200, "X-" + "N" * 900]),
    text=st.text(max_size=3000),
)
def test_any_text_gives_one_clean_field_that_reads_back(name: str, text: str) -> None:
    """Whatever the text, the field is printable ASCII lines of at most 998 octets and
    reads back as the text on one line without controls."""
    value = encode.unstructured(name, text)
    assert_one_field(name, value)
    expected = encode.one_line(text).encode("utf-8", "replace").decode("utf-8")
    assert str(parsed(name, value).get(name, "")) == expected


@SETTINGS
@given(display=st.text(max_size=300))
def test_any_display_name_gives_the_one_address(display: str) -> None:
    """Whatever the display name, the field names exactly the given address."""
    value = encode.address_list("Reply-To", [(display, "ann@example.com")])
    assert value is not None
    assert_one_field("Reply-To", value)
    (addr,) = parsed("Reply-To", value)["Reply-To"].addresses
    assert addr.addr_spec == "ann@example.com"


def test_mime_part_header_fields_follow_the_same_rule() -> None:
    """A part's own header fields are held to the message's rule: a 1,100-character
    token and an encoded word hiding CR LF in a part come out folded within 998
    octets, encoded, and read back as the token and the cleaned text."""
    raw = (
        b"From: Ann <ann@example.com>\n"
        b"To: volunteers@lists.example.org\n"
        b"Subject: parts\n"
        b"Message-ID: <parts@example.com>\n"
        b"Date: Tue, 04 Mar 2025 09:21:00 -0800\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b1"\n'
        b"\n"
        b"--b1\n"
        b"Content-Type: text/plain\n"
        b"\n"
        b"Hello.\n"
        b"--b1\n"
        b"Content-Type: application/octet-stream\n"
        b"Content-Description: =?utf-8?q?a=0D=0ABcc=3A_x?=\n"
        b"X-Part-Blob: " + b"B" * 1100 + b"\n"
        b"Content-Transfer-Encoding: base64\n"
        b"\n"
        b"AAEC\n"
        b"--b1--\n"
    )
    copy = CopyMaker(raw, identity()).copy_for(RECIPIENT)
    msg = check_sendable(copy)
    attachment = [p for p in msg.walk() if p.get_content_type() == "application/octet-stream"]
    assert len(attachment) == 1
    assert str(attachment[0]["X-Part-Blob"]) == "B" * 1100
    assert str(attachment[0]["Content-Description"]) == "a Bcc: x"
    assert attachment[0].get_payload(decode=True) == b"\x00\x01\x02"
