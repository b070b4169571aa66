"""The pieces a per-recipient copy is joined from (routemail.copy builds them once per
message and list): shared byte strings, most of them views into the original message,
and a few slots that render what differs for each recipient."""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass

from routemail.rewrite import headers
from routemail.rewrite.decorate import DecoratedPart, Texts

LF = b"\n"


@dataclass(frozen=True)
class Recipient:
    """What a copy's slots render for one recipient."""

    address: str
    url: str
    texts: Texts


class DecoratedSlot:
    """A run of a decorated part's body that depends on the recipient."""

    __slots__ = ("part", "seg")

    def __init__(self, part: DecoratedPart, seg: tuple[bytes | str, ...]) -> None:
        self.part, self.seg = part, seg

    def render(self, r: Recipient) -> bytes:
        return self.part.render(self.seg, r.texts)


class UnsubscribeField:
    """List-Unsubscribe: the recipient's one-click URL, then the list's mailto."""

    __slots__ = ("head", "tail")

    def __init__(self, mailto: str, nl: bytes) -> None:
        self.head = b"List-Unsubscribe: <"
        self.tail = b">," + nl + b" <mailto:" + mailto.encode("ascii") + b">" + nl

    def render(self, r: Recipient) -> bytes:
        return self.head + r.url.encode("ascii") + self.tail


class WrapperText:
    """The header or footer as its own text/plain part of the wrapping multipart/mixed."""

    __slots__ = ("get", "nl", "opening")

    def __init__(self, boundary: bytes, get: Callable[[Texts], str], nl: bytes) -> None:
        self.opening = b"--" + boundary + b'\nContent-Type: text/plain; charset="utf-8"\n'
        self.get, self.nl = get, nl

    def render(self, r: Recipient) -> bytes:
        data = self.get(r.texts).encode("utf-8")
        if data.isascii() and max(map(len, data.split(b"\n"))) <= headers.MAX_LINE:
            cte = b"7bit"
        else:
            data, cte = binascii.b2a_qp(data, istext=True), b"quoted-printable"
        out = (
            self.opening
            + b"Content-Transfer-Encoding: "
            + cte
            + b"\nContent-Disposition: inline\n\n"
            + data
            + b"\n"  # the line break before the next delimiter belongs to the delimiter
        )
        return out.replace(LF, self.nl) if self.nl != LF else out


Slot = DecoratedSlot | UnsubscribeField | WrapperText
Segment = bytes | memoryview | Slot


def merge(segs: list[Segment]) -> list[Segment]:
    """Adjacent small shared segments joined, so a copy is a join of a few pieces.
    A run is joined once when it is complete: appending to the joined bytes piece by
    piece copied them again for every piece (quadratic in the pieces of a run)."""
    out: list[Segment] = []
    run: list[bytes | memoryview] = []
    size = 0
    for s in segs:
        if isinstance(s, bytes | memoryview):
            if not len(s):
                continue
            if run and size + len(s) >= 65536:
                out.append(joined(run))
                run, size = [], 0
            run.append(s)
            size += len(s)
            continue
        if run:
            out.append(joined(run))
            run, size = [], 0
        out.append(s)
    if run:
        out.append(joined(run))
    return out


def joined(run: list[bytes | memoryview]) -> bytes | memoryview:
    return run[0] if len(run) == 1 else b"".join(run)
