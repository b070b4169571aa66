"""Fuzz target: notices (moderation requests, forwards to the admin). Whatever the
original and the texts taken from it, the notice carries the original unchanged and
keeps the invariants of mail routemail sends."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routemail.notices import Notice
from routemail.spool import header_end
from tests.copy_support import check_crlf_only, check_header_text, check_line_length
from tests.fuzzing import budget, hostile_text, messages


@st.composite
def notices(draw: st.DrawFn) -> Notice:
    raw, _ = draw(messages())
    return Notice(
        from_addr="volunteers-owner@lists.example.org",
        from_name=draw(st.sampled_from(["volunteers moderation", "routemail at lists"])),
        to=["coordinator@example.org"],
        subject="Moderation needed for volunteers: " + draw(hostile_text),
        text="A message is waiting.\nSubject: " + draw(hostile_text) + "\n",
        original=raw,
        headers_only=draw(st.booleans()),
        reply_to="volunteers-approve+token@lists.example.org",
        domain="lists.example.org",
    )


def crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


@budget(20)
@given(notices())
def test_notice_carries_the_original_unchanged(notice: Notice) -> None:
    """A notice is built for any original: a multipart/mixed of the text and the original
    (or, for a virus, only its header block), line ends aside byte for byte."""
    data = notice.as_bytes()
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    text, attached = msg.get_payload()
    assert text.get_content_type() == "text/plain"
    original = crlf(notice.original)
    if notice.headers_only:
        end = header_end(original)
        original = original[:end] if end is not None else original
        assert attached.get_content_type() == "text/rfc822-headers"
    else:
        assert attached.get_content_type() == "message/rfc822"
    start = (
        data.index(
            b"\r\n\r\n", data.index(b"Content-Type: " + attached.get_content_type().encode())
        )
        + 4
    )
    assert data[start:].startswith(original.rstrip(b"\r\n"))


# Not yet kept: notices carry the original's bare CRs and long lines, and the subject's
# control characters, until the header encoder and CR LF wire work lands (#11.5, #11.6).
NOT_YET = pytest.mark.xfail(reason="notices are not yet sent as the wire needs (#11.5, #11.6)")


@NOT_YET
@budget(20, shrink=False)
@given(notices())
def test_notice_is_crlf_only(notice: Notice) -> None:
    """Every line of a notice ends in CR LF; no bare CR or LF from the original survives."""
    check_crlf_only(notice.as_bytes())


@NOT_YET
@budget(20, shrink=False)
@given(notices())
def test_notice_lines_are_at_most_998_octets(notice: Notice) -> None:
    """No line of a notice is over 998 octets, the original's included."""
    check_line_length(notice.as_bytes())


@NOT_YET
@budget(20, shrink=False)
@given(notices())
def test_notice_header_block_is_clean(notice: Notice) -> None:
    """The header block of a notice is ASCII without control characters."""
    check_header_text(notice.as_bytes())
