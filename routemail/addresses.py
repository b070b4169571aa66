"""Email address parsing and comparison.

Two addresses are the same whatever their case, local part included, as
almost every mail host treats them (RFC 5321 discourages relying on the case
of a local part). Everything that compares, counts or looks up addresses does
it through key(); mail goes to the spelling written in the list. Display
names and angle brackets are ignored.
"""

from __future__ import annotations

import email.utils
import re
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


def split(address: str) -> tuple[str, str]:
    """(local part, domain) of a normalized address."""
    local, _, domain = address.rpartition("@")
    return local, domain


def key(address: str) -> str:
    """The form in which addresses are compared: case ignored throughout.

    Valid addresses are ASCII, so lower() is their case fold, and it agrees
    with SQLite's COLLATE NOCASE."""
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
