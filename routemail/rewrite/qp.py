"""Quoted-printable encoding for text the copy writes (RFC 2045 6.7), as binascii
writes it, except that no line a soft break starts begins with "-": the break falls
anywhere in a long line (in an unsubscribe link's token, in `charset=utf-8`), and
"--b" at the start of a line ends the part early in a multipart whose boundary is b.
Such a dash is written =2D, breaking the line once more if it grows past 76."""

from __future__ import annotations

import binascii

QP_LINE = 76  # encoded lines of at most 76 characters


def quoted_printable(data: bytes) -> bytes:
    """Text (line breaks as LF) encoded, line breaks kept as LF."""
    return no_dash_after_soft_break(binascii.b2a_qp(data, istext=True))


def no_dash_after_soft_break(out: bytes) -> bytes:
    """Encoded lines (LF-separated) with a dash that starts a soft-broken line's
    continuation written =2D."""
    if b"=\n-" not in out:
        return out
    lines: list[bytes] = []
    soft = False
    for line in out.split(b"\n"):
        if soft and line.startswith(b"-"):
            line = b"=2D" + line[1:]
            if len(line) > QP_LINE:  # 78 at most: cut before 76, never inside an =XX
                cut = QP_LINE - 1
                if b"=" in line[cut - 2 : cut]:
                    cut = cut - 2 + line[cut - 2 : cut].index(b"=")
                lines.append(line[:cut] + b"=")
                line = line[cut:]
                line = b"=2D" + line[1:] if line.startswith(b"-") else line
        lines.append(line)
        soft = line.endswith(b"=")
    return b"\n".join(lines)
