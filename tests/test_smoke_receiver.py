"""A signed post through gunicorn lands in the spool."""

from __future__ import annotations

import io

from mailxfer.post import post_message
from tests.conftest import SECRET, Receiver

MESSAGE = (
    b"From: ann@example.com\r\nTo: volunteers@lists.example.org\r\nSubject: hi\r\n"
    b"Message-ID: <smoke@example.com>\r\n\r\nhello\r\n"
)


def test_signed_post_is_queued(receiver: Receiver) -> None:
    """A correctly signed POST answers 200 with the id, and the entry is pending."""
    result = post_message(
        receiver.mailrecv_url,
        SECRET.encode(),
        io.BytesIO(MESSAGE),
        ["volunteers@lists.example.org"],
        dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS"),
    )
    assert result.status == 200, result.body
    spool = receiver.project.spool
    assert spool.pending_ids() == [spool.ids()[0]]
    assert spool.read_message(spool.ids()[0]) == MESSAGE
