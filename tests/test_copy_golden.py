"""Golden copies: real-world-shaped messages and the exact copy each must become.

Regenerate the expected copies with ROUTEMAIL_REGEN_GOLDEN=1, then read every changed
file in tests/data/copy/out/ before committing it.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest

from routemail import tokens
from routemail.copy import CopyMaker
from routemail.templates import render
from tests.copy_support import NOW, RECIPIENT, SECRET, SITE, check_sendable, identity

DATA = Path(__file__).parent / "data" / "copy"
INPUTS = sorted((DATA / "in").glob("*.eml"))
REGEN = os.environ.get("ROUTEMAIL_REGEN_GOLDEN") == "1"
# Messages that go out on a list configured differently from the default one.
VARIANTS: dict[str, dict[str, str]] = {
    "07-latin1-qp-euro-footer.eml": {
        "footer": "-- \nYou are on {list} as {recipient}. Dues: 5 € a year.\n"
        "Leave: {unsubscribe_url}"
    },
    "28-header-and-footer-both.eml": {
        "header": "[{description}] sent to {recipient}",
        "reply_to": "both",
    },
    "29-reply-to-list.eml": {"reply_to": "list"},
    "33-iso-2022-jp-accented-footer.eml": {
        "footer": "-- \nZoë, the list admin, says: leave at {unsubscribe_url}"
    },
}


def make(path: Path) -> tuple[CopyMaker, bytes]:
    maker = CopyMaker(path.read_bytes(), identity(**VARIANTS.get(path.name, {})), now=NOW)
    return maker, maker.copy_for(RECIPIENT)


def test_corpus_is_large_enough() -> None:
    """The golden corpus holds at least 25 messages, each with its expected copy."""
    assert len(INPUTS) >= 25
    assert {p.name for p in INPUTS} == {p.name for p in (DATA / "out").glob("*.eml")}


@pytest.mark.parametrize("path", INPUTS, ids=[p.stem for p in INPUTS])
def test_golden_copy(path: Path) -> None:
    """Each message becomes exactly its checked-in copy for the fixed recipient and secret."""
    _, copy = make(path)
    expected = DATA / "out" / path.name
    if REGEN:
        expected.write_bytes(copy)
    assert copy == expected.read_bytes()


@pytest.mark.parametrize("path", INPUTS, ids=[p.stem for p in INPUTS])
def test_copy_is_sendable_and_decorated(path: Path) -> None:
    """Every copy re-parses strictly, carries the list's fields and shows the footer,
    decoded in the charset its part declares."""
    raw = path.read_bytes()
    maker, copy = make(path)
    msg = check_sendable(copy)
    mlist = maker.identity.mlist
    url = tokens.unsubscribe_url(SITE, SECRET, "volunteers", RECIPIENT, int(NOW))
    assert f"<{url}>" in str(msg["List-Unsubscribe"])
    assert msg["List-Id"].endswith("<volunteers.lists.example.org>")
    assert msg["X-Loop"] == "lists.example.org"
    assert msg["Precedence"] == "list"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Sender"] == "volunteers-bounces@lists.example.org"
    assert msg["From"].addresses[0].addr_spec == "volunteers@lists.example.org"
    assert "[volunteers]" in msg["Subject"]
    assert msg["Subject"].count("[volunteers]") == 1
    for gone in ("DKIM-Signature", "ARC-Seal", "Authentication-Results", "Return-Path"):
        assert gone not in msg
    assert not [k for k in msg if k.lower().startswith("x-ses-")]

    values = {
        "list": "volunteers",
        "list_address": "volunteers@lists.example.org",
        "description": mlist.description,
        "recipient": RECIPIENT,
        "unsubscribe_url": url,
        "site": SITE.name,
    }
    footer = render(mlist.footer, values)
    texts = {}
    for part in msg.walk():
        if part.get_content_type() in ("text/plain", "text/html") and not part.is_attachment():
            try:
                texts[id(part)] = (
                    part.get_content_type(),
                    part.get_content().replace("\r\n", "\n"),
                )
            except LookupError:
                continue  # an unknown charset the copy leaves alone
    plain = [t for kind, t in texts.values() if kind == "text/plain" and footer in t]
    html_ = [t for kind, t in texts.values() if kind == "text/html" and html.escape(url) in t]
    assert plain or html_, "no part shows the footer"
    if maker.wrapped:
        last = list(msg.walk())[-1]
        assert last.get_content().replace("\r\n", "\n") == footer + "\n"
    if mlist.header:
        header = render(mlist.header, values)
        assert any(t.startswith(header) for _, t in texts.values())
    for part in msg.walk():
        if part.get_content_type() == "multipart/alternative":
            kinds = {p.get_content_type() for p in part.iter_parts()}
            if {"text/plain", "text/html"} <= kinds:
                assert plain and html_, "both sides of the alternative are decorated"

    # A signed or encrypted body is carried byte for byte.
    head_end = re.search(rb"\r?\n\r?\n", raw)
    assert head_end is not None
    if re.search(rb"(?im)^content-type:\s*(multipart/(signed|encrypted)|application/pkcs7)", raw):
        assert maker.wrapped
        assert raw[head_end.end() :] in copy


def test_author_threading_fields_kept() -> None:
    """Message-ID, In-Reply-To, References and Date reach the copy unchanged."""
    path = DATA / "in" / "16-reply-prefixed.eml"
    _, copy = make(path)
    msg = check_sendable(copy)
    assert msg["Message-ID"] == "<reply.1@example.net>"
    assert msg["In-Reply-To"] == "<CAF1plain@mail.example.com>"
    assert msg["References"].split() == [
        "<CAF0root@mail.example.com>",
        "<CAF1plain@mail.example.com>",
    ]
    assert msg["Subject"] == "Re: [volunteers] Saturday shift"
    assert msg["Reply-To"] == "Bob Example <bob@example.net>"
