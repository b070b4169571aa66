"""Fuzz target: the copy rewriter. Whatever an author sends, the copy for the wire keeps
the invariants every message routemail sends must keep."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given

from routemail.copy import CopyError, CopyMaker
from tests.copy_support import (
    RECIPIENT,
    check_crlf_only,
    check_header_text,
    check_line_length,
    check_sendable,
    identity,
)
from tests.fuzzing import Attachment, budget, messages


def non_text_payloads(data: bytes) -> list[bytes]:
    """The decoded bodies of the message's leaf parts that are not text, in order."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    return [
        part.get_payload(decode=True)
        for part in msg.walk()
        if not part.is_multipart() and part.get_content_maintype() not in ("text", "message")
    ]


@budget(25)
@given(messages())
def test_copy_keeps_the_wire_invariants(message: tuple[bytes, list[Attachment]]) -> None:
    """The copy of any message (with CR LF line ends, as sent) is made or refused with a
    reason; when made: CR LF only, no line over 998 octets, an ASCII header block without
    control characters, a strict re-parse without defects, attachments byte-identical."""
    raw, files = message
    try:
        maker = CopyMaker(raw, identity(header="Hi {recipient}"), eol=b"\r\n")
    except CopyError as exc:
        assert not exc.unexpected, exc
        return
    data = maker.copy_for(RECIPIENT)
    check_crlf_only(data)
    check_line_length(data)
    check_header_text(data)
    check_sendable(data)
    assert non_text_payloads(data) == [f.data for f in files]
