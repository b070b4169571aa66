"""Who wrote a message (routemail.author) and whether SES vouches for it (routemail.alignment)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routemail.alignment import aligned, signing_domain, unvouched
from routemail.author import MAX_FROM_CHARS, Author, author_of
from routemail.copy import CopyMaker
from routemail.message import Headers
from tests.copy_support import identity

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


@pytest.mark.parametrize(
    ("value", "address"),
    [
        # An encoded display name holding an address is only a name.
        ("=?us-ascii?q?chair=40example.org?= <mallory@evil.example>", "mallory@evil.example"),
        ('"chair@example.org" <mallory@evil.example>', "mallory@evil.example"),
        ("=?utf-8?b?Y2hhaXJAZXhhbXBsZS5vcmc=?= <mallory@evil.example>", "mallory@evil.example"),
        # A comment naming an address is a comment.
        ("mallory@evil.example (chair@example.org)", "mallory@evil.example"),
        ("Mal <mallory@evil.example> (<chair@example.org>)", "mallory@evil.example"),
        ("Ann Author <ann@example.com>", "ann@example.com"),
        ("ann@Example.COM", "ann@example.com"),
        (" Ann\r\n Author <ann@example.com>", "ann@example.com"),
        ("J\u00f6rg <jorg@example.com>", "jorg@example.com"),
        # RFC 5322 allows a domain literal; it is the address, not a repair.
        ("<mallory@[192.0.2.1]>", "mallory@[192.0.2.1]"),
    ],
)
def test_the_author_is_the_parsed_address(value: str, address: str) -> None:
    """The author is the addr-spec of From's one mailbox, never text from its display
    name or comments, whatever they decode to."""
    assert author_of([value]).address == address


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([], "no From header"),
        ([""], "an empty From header"),
        (["ann@example.com", "chair@example.org"], "2 From headers"),
        (["ann@example.com, chair@example.org"], "2 addresses in the From header"),
        (["undisclosed-recipients:;"], "group syntax in the From header"),
        (["board: chair@example.org;"], "group syntax in the From header"),
        (["chair@example.org: mallory@evil.example;"], "a From header that does not parse"),
        (["chair@example.org <mallory@evil.example>"], "a From header that does not parse"),
        (["ann@example.com chair@example.org"], "a From header that does not parse"),
        (["<mallory@evil.example"], "a From header that does not parse"),
        (["mallory@evil.example@example.org"], "a From header that does not parse"),
        (["<=?us-ascii?q?chair?=@example.org>"], "a From header that does not parse"),
        (["Mal <@relay.example:mallory@evil.example>"], "a From header that does not parse"),
        (['"chair@example.org"@evil.example'], "a From address that does not parse"),
        (["Mal\r <mallory@evil.example>"], "control characters in the From header"),
        (["Mal\x00 <mallory@evil.example>"], "control characters in the From header"),
        (["Mal" * 700 + " <m@evil.example>"], f"longer than {MAX_FROM_CHARS} characters"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_no_author_is_guessed(values: list[str], problem: str) -> None:
    """A From that does not name exactly one mailbox, plainly, has no author, and the
    problem says why."""
    author = author_of(values)
    assert author.address is None
    assert author.problem is not None and problem in author.problem


def test_a_display_name_that_looks_like_an_address_is_not_shown() -> None:
    """The name shown in copies never passes for another address."""
    assert author_of(["=?us-ascii?q?chair=40example.org?= <m@evil.example>"]).name == ""
    assert author_of(["Ann <ann@example.com>"]).name == "Ann"


def test_routing_and_the_copy_agree_on_the_author() -> None:
    """The address routing decides on is the address the copy names (X-Original-From)."""
    raw = (
        b"From: =?us-ascii?q?chair=40example.org?= <mallory@evil.example>\n"
        b"To: volunteers@lists.example.org\nSubject: Hi\nMessage-ID: <a@x>\n\nBody\n"
    )
    assert Headers.of(raw).author.address == "mallory@evil.example"
    copy = CopyMaker(raw, identity()).copy_for("bob@example.net")
    assert b"X-Original-From: mallory@evil.example" in copy
    assert b"chair@example.org" not in copy


def test_an_8bit_from_header_is_read_from_bytes() -> None:
    """Raw 8-bit bytes in From (UTF-8 or Windows-1252) do not hide the address."""
    assert author_of([b" J\xc3\xb6rg <jorg@example.com>"]) == Author(
        "jorg@example.com", "J\u00f6rg"
    )
    assert author_of([b" J\xf6rg <jorg@example.com>"]).address == "jorg@example.com"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_from_value_gives_an_address_that_stands_in_it_or_a_problem(text: str) -> None:
    """Whatever From says, the answer is an address written in it literally, or a problem."""
    author = author_of([text])
    if author.address is None:
        assert author.problem
    else:
        local, _, domain = author.address.rpartition("@")
        assert local in text and domain.lower() in text.lower()


# -- alignment -------------------------------------------------------------------------


def signed(from_value: str, *domains: str) -> bytes:
    sigs = "".join(
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\n d={d}; s=sel; bh=x=; b=y=\n"
        for d in domains
    )
    return f"{sigs}From: {from_value}\nSubject: Re: ok\n\nyes\n".encode()


def test_signing_domain_is_read_only_from_a_single_signature() -> None:
    """d= of the only DKIM-Signature is the signer; with none or several there is none."""
    assert signing_domain(signed("a@example.org", "Example.ORG")) == "example.org"
    assert signing_domain(signed("a@example.org")) is None
    assert signing_domain(signed("a@example.org", "evil.example", "example.org")) is None
    assert signing_domain(b"DKIM-Signature: v=1; s=x\nFrom: a@example.org\n\n") is None
    assert signing_domain(b"DKIM-Signature: d=not a domain;\nFrom: a@example.org\n\n") is None


@pytest.mark.parametrize(
    ("signer", "from_domain", "ok"),
    [
        ("example.org", "example.org", True),
        ("example.org", "mail.example.org", True),
        ("mail.example.org", "example.org", False),
        ("evil.example", "example.org", False),
        ("ample.org", "example.org", False),
    ],
)
def test_alignment(signer: str, from_domain: str, ok: bool) -> None:
    """A signer aligns with its own domain and its subdomains, nothing else."""
    assert aligned(signer, from_domain) is ok


@pytest.mark.parametrize(
    ("verdicts", "from_value", "domains", "refusal"),
    [
        ({}, "chair@example.org", (), None),
        ({"dmarc": "FAIL"}, "chair@example.org", ("example.org",), None),
        ({"dmarc": "GRAY"}, "chair@sub.example.org", ("example.org",), None),
        ({"dmarc": "FAIL"}, "chair@example.org", ("evil.example",), "DKIM passed for evil"),
        ({"dmarc": "FAIL"}, "chair@example.org", (), "exactly one DKIM-Signature"),
        ({"dmarc": "FAIL"}, "chair@example.org", ("example.org", "x.example"), "exactly one"),
        ({"dmarc": "FAIL", "dkim": "FAIL"}, "chair@example.org", ("example.org",), "neither"),
        ({}, "a@example.org, chair@example.org", (), "2 addresses"),
    ],
)
def test_what_vouches_for_an_approver(
    verdicts: dict[str, str], from_value: str, domains: tuple[str, ...], refusal: str | None
) -> None:
    """DMARC PASS vouches; otherwise DKIM PASS with one signature whose domain aligns
    with From; a pass for another domain does not; nor does a From with two mailboxes."""
    raw = signed(from_value, *domains)
    why = unvouched(PASSING | verdicts, raw, Headers.of(raw).author)
    if refusal is None:
        assert why is None
    else:
        assert why is not None and refusal in why
