"""Fuzz target: notices (moderation requests, forwards to the admin). Whatever the
original and the texts taken from it, the notice carries the original unchanged and
keeps the invariants of mail routemail sends."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given
from hypothesis import strategies as st

from routemail.identity import header_end
from routemail.notices import Notice
from routemail.transports.wire import wire_form
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


@budget(20)
@given(notices())
def test_notice_carries_the_original_unchanged(notice: Notice) -> None:
    """A notice is built for any original: a multipart/mixed of the text and the original
    (or, for a virus, only its header block), in its wire form (CR LF line breaks, no
    NUL) and otherwise byte for byte, inline or, with a line too long to send, in base64."""
    data = notice.as_bytes()
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    text, attached = msg.get_payload()
    assert text.get_content_type() == "text/plain"
    original = wire_form(notice.original)
    if notice.headers_only:
        end = header_end(original)
        original = original[:end] if end is not None else original
    if attached["Content-Transfer-Encoding"] == "base64":
        assert attached.get_payload(decode=True) == original
        return
    kind = "text/rfc822-headers" if notice.headers_only else "message/rfc822"
    assert attached.get_content_type() == kind
    start = data.index(b"\r\n\r\n", data.index(b"Content-Type: " + kind.encode())) + 4
    assert data[start:].startswith(original.rstrip(b"\r\n"))


@budget(20)
@given(notices())
def test_notice_keeps_the_wire_invariants(notice: Notice) -> None:
    """A notice is CR LF only (no bare CR or LF from the original survives), has no line
    over 998 octets (the original's included), and an ASCII header block without
    control characters (the subject's included)."""
    data = notice.as_bytes()
    check_crlf_only(data)
    check_line_length(data)
    check_header_text(data)
