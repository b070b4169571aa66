"""Email address parsing and comparison.

Two addresses are the same whatever their case, local part included, as
almost every mail host treats them (RFC 5321 discourages relying on the case
of a local part). Everything that compares, counts or looks up addresses does
it through key(); mail goes to the spelling written in the list. Display
names and angle brackets are ignored.

Two grammars: normalize() is the strict one for addresses people give
routemail (list members, moderators, the API, the command line): an ASCII
dot-atom at a domain with a dot. normalize_mailbox() is for authors, whose
address is whatever RFC 5322 and RFC 6532 let them write: a quoted local part
("System Administrator"@example.org), UTF-8 (jörg@exämple.de), a single-label
domain (guest@localhost) or a domain literal (ann@[192.0.2.1]).

How such an author address is compared: its canonical form is compared with
key(), like any other. A quoted local part that needs no quotes is written
without them ("ann"@example.org is ann@example.org, RFC 5322 3.4.1), so it
matches the member ann@example.org; one that needs them keeps them, minimally
quoted, and matches no member (members are dot-atoms). A UTF-8 address is
lower-cased with str.lower(), which folds non-ASCII letters too (JÖRG is
jörg); SQLite's COLLATE NOCASE folds only ASCII, and a U-label domain
(exämple.de) is not its A-label (xn--exmple-cua.de): neither matters for
members, which are ASCII.
"""

from __future__ import annotations

import email.utils
import re
import unicodedata
from collections.abc import Iterable, Iterator

# Conservative: printable ASCII without specials that break headers or paths.
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def normalize(text: str) -> str | None:
    """The canonical form (local part as written, domain lower-cased), or None."""
    if any(ch in text for ch in "\r\n\x00"):
        return None
    local, at, domain = text.rpartition("@")
    if at and _valid_parts(local, domain):
        return f"{local}@{domain.lower()}"  # already a bare address: no parsing needed
    try:
        parsed = email.utils.getaddresses([text])
    except Exception:  # RecursionError on thousands of nested '(' comments
        return None
    if len(parsed) != 1:
        return None  # "a@x, b@y" is two addresses, not one
    addr = parsed[0][1]
    if not addr or addr not in text:
        return None  # the parser had to repair it ("a@ex ample.org"): refuse, don't guess
    local, at, domain = addr.rpartition("@")
    if not at or not _valid_parts(local, domain):
        return None
    return f"{local}@{domain.lower()}"


def _valid_parts(local: str, domain: str) -> bool:
    return bool(
        _LOCAL.match(local)
        and _DOMAIN.match(domain)
        and not (local.startswith(".") or local.endswith(".") or ".." in local)
    )


# RFC 5322 atext, with RFC 6532's UTF-8 (checked for unwanted characters apart).
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+")
# RFC 5321 Domain labels (letters, digits, hyphens), with RFC 6532's UTF-8 U-labels.
_LETTER = r"A-Za-z0-9\u0080-\U0010ffff"
_LABEL = re.compile(rf"[{_LETTER}](?:[{_LETTER}-]*[{_LETTER}])?")
# RFC 5322 dtext: printable ASCII but brackets and backslash, no spaces.
_LITERAL = re.compile(r"\[[!-Z^-~]{1,253}\]")
MAX_LOCAL_OCTETS = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN_OCTETS = 255  # RFC 5321 4.5.3.1.2


def normalize_mailbox(local: str, domain: str) -> str | None:
    """The canonical form of an author's addr-spec, given its local part unquoted (the
    text between the quotes, quoted-pairs resolved) and its domain; None if it is no
    address RFC 5322 / 6532 allows, or one refused on purpose:

    - a local part holding "@": some mail systems split such an address at its first
      "@", so "chair@example.org"@evil.example would pass for chair@example.org;
    - characters no header or SMTP path may carry (controls, tabs, line and paragraph
      separators, bidirectional overrides) and non-ASCII spaces: a copy could show
      the address as another, and routemail's records separate fields by spaces;
    - a local part over 64 octets or a domain over 255 (RFC 5321's limits).
    """
    if not local or "@" in local or not domain or not _printable(local + domain):
        return None
    if len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        return None
    if not (_LITERAL.fullmatch(domain) or _valid_domain(domain)):
        return None
    # A domain literal is kept as written: its tag ("IPv6:") is the sender's.
    return f"{quote_local(local)}@{domain if domain.startswith('[') else domain.lower()}"


def canonical(addr_spec: str) -> str | None:
    """normalize_mailbox() of an addr-spec as written (its local part quoted or not)."""
    local, at, domain = addr_spec.rpartition("@")
    return normalize_mailbox(unquote_local(local), domain) if at else None


def quote_local(local: str) -> str:
    """A local part as an addr-spec writes it: bare when it is a dot-atom, else a quoted
    string with only DQUOTE and backslash escaped (RFC 5321 4.1.2's minimal form)."""
    atoms = local.split(".")
    if all(_ATEXT.fullmatch(atom) for atom in atoms):
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_local(local: str) -> str:
    """The local part of a canonical address without its quotes and escapes."""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def _printable(text: str) -> bool:
    """No control, tab, separator or format character; spaces only the ASCII one."""
    return all(
        ch == " " or (ch.isprintable() and not ch.isspace() and unicodedata.category(ch) != "Cf")
        for ch in text
    )


def _valid_domain(domain: str) -> bool:
    if len(domain.encode("utf-8")) > MAX_DOMAIN_OCTETS:
        return False
    labels = domain.split(".")
    if not all(_LABEL.fullmatch(label) and len(label.encode()) <= 63 for label in labels):
        return False
    if domain.isascii():
        return True
    try:
        domain.encode("idna")  # it has an A-label (SES and some relays need one)
    except UnicodeError:
        return False
    return True


def ascii_domain(address: str) -> str:
    """address with a UTF-8 domain written as its A-label (xn--..., the same domain) when
    its local part is ASCII, so that it needs no SMTPUTF8 (RFC 6531 3.2) and SES takes
    it; an address with a UTF-8 local part needs SMTPUTF8 anyway and stays as written."""
    local, _, domain = address.rpartition("@")
    if domain.isascii() or not local.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:  # not one normalize_mailbox() accepted: left for the next hop
        return address


def split(address: str) -> tuple[str, str]:
    """(local part, domain) of a normalized address."""
    local, _, domain = address.rpartition("@")
    return local, domain


def key(address: str) -> str:
    """The form in which addresses are compared: case ignored throughout.

    For the ASCII addresses normalize() accepts, lower() is their case fold, and
    it agrees with SQLite's COLLATE NOCASE; for authors' UTF-8 addresses see the
    module's docstring."""
    return address.lower()


def same(a: str, b: str) -> bool:
    na, nb = normalize(a), normalize(b)
    return na is not None and nb is not None and key(na) == key(nb)


def contains(addresses: Iterable[str], address: str | None) -> bool:
    """Whether address is among addresses, whatever the case of either."""
    return address is not None and key(address) in {key(a) for a in addresses}


def unique(addresses: Iterable[str]) -> tuple[str, ...]:
    """Each address once, as first spelled (Bob@x and bob@x are one address)."""
    first: dict[str, str] = {}
    for address in addresses:
        first.setdefault(key(address), address)
    return tuple(first.values())


class AddressSet:
    """A set of addresses that ignores case (what route.py has done for whom)."""

    def __init__(self, items: Iterable[str] = ()) -> None:
        self._keys = {key(a) for a in items}

    def add(self, address: str) -> None:
        self._keys.add(key(address))

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and key(address) in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
