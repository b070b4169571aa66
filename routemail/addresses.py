"""Email address parsing and comparison.

Two addresses are the same when their domains match case-insensitively and
their local parts match as written (RFC 5321 leaves local-part case to the
receiving host). Display names and angle brackets are ignored.
"""

from __future__ import annotations

import email.utils
import re

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


def same(a: str, b: str) -> bool:
    na, nb = normalize(a), normalize(b)
    return na is not None and na == nb
