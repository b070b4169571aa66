"""The per-recipient copy: parse and decorate once per message and list,
then fill in what differs for each recipient.

Pure: bytes and settings in, bytes out.
"""

from __future__ import annotations

from dataclasses import dataclass

from routemail.config import MailingList, Site
from routemail.errors import RoutemailError

LOOP_HEADER = "X-Loop"


class CopyError(RoutemailError):
    """The message cannot be turned into a sendable copy."""


@dataclass(frozen=True)
class ListIdentity:
    """What a copy needs to know about the list it goes out on."""

    mlist: MailingList
    site: Site
    secret: bytes

    @property
    def address(self) -> str:
        return f"{self.mlist.name}@{self.site.domain}"

    @property
    def list_id(self) -> str:
        return f"{self.mlist.name}.{self.site.domain}"


class CopyMaker:
    """Built once per (message, list); copy_for() is the per-recipient hot path."""

    def __init__(self, raw: bytes, identity: ListIdentity) -> None:
        self.identity = identity
        nl = b"\r\n" if b"\r\n" in raw[:1000] else b"\n"
        head = (
            b"List-Id: <%s>%s" % (identity.list_id.encode(), nl)
            + b"Precedence: list"
            + nl
            + b"%s: %s%s" % (LOOP_HEADER.encode(), identity.site.domain.encode(), nl)
        )
        self._bytes = head + raw

    def copy_for(self, recipient: str) -> bytes:
        return self._bytes
