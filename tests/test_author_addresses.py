"""Every author address RFC 5322 / RFC 6532 allows (routemail.addresses.normalize_mailbox),
and how the copy, the sidecar and the header encoder carry one."""

from __future__ import annotations

import pytest

from routemail import addresses, sidecar
from routemail.author import author_of
from routemail.copy import CopyMaker
from routemail.rewrite import encode
from tests.copy_support import identity

SYSADMIN = '"System Administrator"@example.org'
JOERG = "j\u00f6rg@ex\u00e4mple.de"
CHINESE = "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a"


@pytest.mark.parametrize(
    ("value", "address", "name"),
    [
        (b'"System Administrator"@example.org', SYSADMIN, ""),
        ("J\u00f6rg <j\u00f6rg@ex\u00e4mple.de>".encode(), JOERG, "J\u00f6rg"),
        (b"guest@localhost", "guest@localhost", ""),
        (b'Ann <"a b"@example.org>', '"a b"@example.org', "Ann"),
        # Quotes a dot-atom does not need are not part of the address (RFC 5322 3.4.1).
        (b'"ann"@Example.ORG', "ann@example.org", ""),
        # Two spaces, an escaped DQUOTE and backslash: kept, minimally quoted.
        (b'"a  b\\"c\\\\d"@example.org', '"a  b\\"c\\\\d"@example.org', ""),
        (b'"john..doe"@example.org', '"john..doe"@example.org', ""),
        (b"<ops@[192.0.2.1]>", "ops@[192.0.2.1]", ""),
        (b"ops@[IPv6:2001:db8::1]", "ops@[IPv6:2001:db8::1]", ""),
        (CHINESE.encode(), CHINESE, ""),
        (b"ann@xn--exmple-cua.de", "ann@xn--exmple-cua.de", ""),
        # Folded inside the quotes: unfolding removes only the line break.
        (b'"System\r\n Administrator"@example.org', SYSADMIN, ""),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_every_address_rfc_5322_and_6532_allow_is_an_author(
    value: bytes, address: str, name: str
) -> None:
    author = author_of([value])
    assert (author.address, author.name, author.problem) == (address, name, None)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        # Some systems split at the first "@": this would pass for chair@example.org.
        (b'"chair@example.org"@evil.example', "does not parse"),
        # An address is never decoded or guessed into being.
        (b"=?utf-8?q?j=C3=B6rg?=@example.com", "does not parse"),
        (b"<=?utf-8?q?chair?=@example.org>", "does not parse"),
        (b"J\xf6rg <j\xf6rg@example.com>", "not written in UTF-8"),
        (b'"a\tb"@example.org', "does not parse"),  # no tab in an SMTP path
        ('"a\u202eb"@example.org'.encode(), "does not parse"),  # a bidi override
        ("ann\u00a0b@example.org".encode(), "does not parse"),  # a no-break space
        ("ann\u3000b@example.org".encode(), "does not parse"),
        (b'""@example.org', "does not parse"),
        (b"ann@-example.org", "does not parse"),
        (b"ann@example..org", "does not parse"),
        (b"ann@" + b"a" * 64 + b".org", "does not parse"),
        (b"a" * 65 + b"@example.org", "does not parse"),
        (b"ann@[192.0.2.1 ]", "does not parse"),
        (b"ann@[\\]]", "does not parse"),
        (b"a . b@example.org", "does not parse"),  # obsolete syntax: a repair
        (b'"a\rb"@example.org', "control characters"),
        (b'"a\x00b"@example.org', "control characters"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_hostile_or_unusable_addresses_stay_refused(value: bytes, problem: str) -> None:
    author = author_of([value])
    assert author.address is None
    assert author.problem is not None and problem in author.problem


def test_members_and_api_input_keep_the_strict_grammar() -> None:
    """Only authors get the wide grammar: a list member is still an ASCII dot-atom at a
    domain with a dot."""
    for text in (SYSADMIN, JOERG, "guest@localhost", "ops@[192.0.2.1]"):
        assert addresses.normalize(text) is None
    assert addresses.normalize("Ann@Example.org") == "Ann@example.org"


def test_authors_are_compared_with_members_ignoring_case() -> None:
    members = ["ann@example.org", "joerg@example.de"]
    assert addresses.contains(members, author_of([b'"Ann"@example.org']).address)
    assert addresses.contains(members, author_of([b"ANN@EXAMPLE.ORG"]).address)
    assert not addresses.contains(members, author_of([b'"ann b"@example.org']).address)
    upper = author_of(["J\u00d6RG@EX\u00c4MPLE.DE".encode()]).address
    assert upper is not None and addresses.key(upper) == addresses.key(JOERG)


def test_the_header_encoder_writes_such_addresses_whole() -> None:
    """A quoted local part keeps its quotes and every space, even where the field is
    folded; a UTF-8 address is written only when the message may carry it."""
    long_name = "A display name long enough to make the field fold before the address"
    value = encode.address_list("Reply-To", [(long_name, '"a  b"@example.org')])
    assert value is not None and b'<"a  b"@example.org>' in value
    assert encode.address_list("Reply-To", [("", JOERG)]) is None
    utf8 = encode.address_list("Reply-To", [("", JOERG)], utf8=True)
    assert utf8 == b" " + JOERG.encode()
    for bad in ('"a"b"@x.org', "a b@x.org", '"a\nb"@x.org', "a@x.org>, <b@y.org"):
        assert not encode.usable_address(bad, utf8=True)


def test_a_quoted_address_with_spaces_is_one_sidecar_field() -> None:
    for address in (SYSADMIN, '"a  b\\"c"@example.org', '"a\\\\_b"@example.org', JOERG):
        line = sidecar.event(sidecar.SENT, address, "250 2.0.0 Accepted").format()
        (parsed,) = sidecar.parse(line)
        assert parsed.fields == (address, "250", "2.0.0", "Accepted")
        lines = sidecar.event(sidecar.OUTGOING, address, "ann@example.org").format()
        assert sidecar.History.of(sidecar.parse(lines)).outgoing == [address, "ann@example.org"]


def _copy(from_value: bytes, extra: bytes = b"") -> tuple[dict[bytes, bytes], list[str]]:
    raw = (
        b"From: " + from_value + b"\n" + extra + b"To: volunteers@lists.example.org\n"
        b"Subject: Hi\nMessage-ID: <a@example.org>\nDate: Thu, 3 Dec 2026 03:00:00 +0000\n\n"
        b"Body\n"
    )
    maker = CopyMaker(raw, identity())
    copy = maker.copy_for("bob@example.net")
    head = copy.split(b"\n\n")[0].replace(b"\n ", b" ")
    fields = dict(line.split(b": ", 1) for line in head.split(b"\n") if b": " in line)
    return fields, maker.problems


@pytest.mark.parametrize(
    ("from_value", "shown", "reply_to"),
    [
        (b'"System Administrator"@example.org', b"System Administrator", SYSADMIN.encode()),
        ("J\u00f6rg <j\u00f6rg@ex\u00e4mple.de>".encode(), b"=?utf-8?q?J=C3=B6rg", JOERG.encode()),
        (b"guest@localhost", b"guest via", b"guest@localhost"),
        (b'Ann <"a b"@example.org>', b"Ann via", b'Ann <"a b"@example.org>'),
    ],
)
def test_the_copy_names_the_author(from_value: bytes, shown: bytes, reply_to: bytes) -> None:
    fields, problems = _copy(from_value)
    assert fields[b"From"].startswith(shown)
    assert reply_to in fields[b"Reply-To"]
    assert b"?" not in fields[b"Reply-To"].replace(b"=?utf-8?q?", b"").replace(b"?=", b"")
    assert not [p for p in problems if p.startswith("From")]


def test_a_utf8_reply_to_in_an_ascii_message_is_left_out_with_the_reason() -> None:
    """Only an internationalised message (its From raw UTF-8) gets a UTF-8 Reply-To;
    otherwise the author's own address is used, and the problem is recorded."""
    fields, problems = _copy(b"Ann <ann@example.org>", b"Reply-To: " + JOERG.encode() + b"\n")
    assert fields[b"Reply-To"] == b"Ann <ann@example.org>"
    assert any("Reply-To" in p and JOERG in p and "not UTF-8" in p for p in problems)


def test_nothing_stands_between_the_parts_of_an_author_address() -> None:
    """A comment or space around the "@" is valid syntax, but the address must stand in
    the field as one piece, as before: it is not reassembled from parts."""
    assert author_of([b"chair (@example.org) @evil.example"]).address is None
    assert author_of([b'"a b" @ example.org']).address is None
    assert author_of([b"Ann <ann@example.org> (work)"]).address == "ann@example.org"
