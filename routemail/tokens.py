"""Unforgeable tokens: HMACs with the server secret in data/secret.key.

Moderation tokens cover (message id, list); unsubscribe tokens cover
(list, address, when the copy was made), so the receiver can refuse a link
from a copy made before the member last left or joined. Neither is stored:
the receiver recomputes and compares in constant time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from routemail.errors import RoutemailError

if TYPE_CHECKING:
    from routemail.config import Site

MODERATION_TOKEN_CHARS = 16  # 80 bits of HMAC in lower-case base32: survives case-folding MTAs
UNSUBSCRIBE_TOKEN_CHARS = 22  # 132 bits


def load_secret(data_dir: Path) -> bytes:
    """ROUTEMAIL_SECRET, or data/secret.key, created with 256 random bits if absent."""
    if env := os.environ.get("ROUTEMAIL_SECRET"):
        return env.encode("utf-8")
    path = data_dir / "secret.key"
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)  # another process created it first
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return _read(path)


def _read(path: Path) -> bytes:
    text = path.read_text("ascii").strip()
    if len(text) < 32:
        raise RoutemailError(f"{path} holds too short a secret; delete it to make a new one")
    return text.encode("ascii")


def _mac(secret: bytes, purpose: str, *parts: str, chars: int) -> str:
    text = "\n".join((purpose, *parts)).encode("utf-8")
    digest = hmac.new(secret, text, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:chars]


def moderation_token(secret: bytes, msg_id: str, listname: str, action: str = "approve") -> str:
    """The token of a moderation address; an approval's covers no action word (as
    before rejections came by mail), so requests already sent keep working."""
    parts = ("moderate", msg_id, listname.lower(), *(() if action == "approve" else (action,)))
    text = "\n".join(parts).encode("utf-8")
    digest = hmac.new(secret, text, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:MODERATION_TOKEN_CHARS]


def unsubscribe_token(secret: bytes, listname: str, address: str, issued: int | None) -> str:
    """The token of a copy made at issued (unix seconds); None for links in copies made
    before the time was part of them, which carry no i= parameter."""
    parts = (listname.lower(), address) + (() if issued is None else (str(issued),))
    return _mac(secret, "unsubscribe", *parts, chars=UNSUBSCRIBE_TOKEN_CHARS)


def unsubscribe_url(site: Site, secret: bytes, listname: str, address: str, issued: int) -> str:
    """The one-click unsubscribe URL for address on listname in a copy made at issued
    (RFC 8058 POSTs go here too)."""
    token = unsubscribe_token(secret, listname, address, issued)
    return (
        f"{site.base_url}/unsubscribe/{urllib.parse.quote(listname, safe='')}"
        f"?a={urllib.parse.quote(address, safe='@')}&i={issued}&t={token}"
    )


def matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))
