"""Encoded bodies with lines too long to send, re-wrapped: the decoded bytes stay the same.

SMTP carries lines of at most 998 octets and SES refuses longer ones, yet mail
arrives with a whole base64 attachment on one line, or quoted-printable text whose
author's software never broke its lines. Such a body is decoded and encoded again
in lines of 76 characters (RFC 2045), so a reader decodes exactly what the author
sent. Bodies sent as they are (7bit, 8bit) get a transfer encoding instead: that is
mime.py's, which calls this for the encoded ones.
"""

from __future__ import annotations

import binascii

from routemail.rewrite.qp import no_dash_after_soft_break, quoted_printable

CRLF = b"\r\n"
LF = b"\n"
LINE = 76  # characters of an encoded line (RFC 2045 6.7, 6.8)
_WHITESPACE = b" \t\r\n"


def rewrapped(body: bytes, nl: bytes, cte: str, text: bool) -> bytes:
    """body (in line ending nl, of transfer encoding cte: base64 or quoted-printable)
    encoded again in lines of at most 76 characters ending in nl."""
    out = _base64(body) if cte == "base64" else _quoted_printable(body, nl, text)
    out = out.replace(LF, nl) if nl != LF else out
    return out + nl if body.endswith(nl) and not out.endswith(nl) else out


def _base64(body: bytes) -> bytes:
    try:
        chars = binascii.b2a_base64(binascii.a2b_base64(body), newline=False)
    except binascii.Error:
        # Damaged: its characters kept as they are (decoders skip line breaks), re-wrapped.
        chars = body.translate(None, _WHITESPACE)
    return LF.join(chars[i : i + LINE] for i in range(0, len(chars), LINE))


def _quoted_printable(body: bytes, nl: bytes, text: bool) -> bytes:
    # Decoded as it is on the wire, where each line break is CR LF.
    data = binascii.a2b_qp(body.replace(LF, CRLF) if nl == LF else body)
    if text and not _lone_breaks(data):
        return quoted_printable(data.replace(CRLF, LF))
    # Every CR and LF encoded (=0D, =0A), so none can end up bare; the soft line
    # breaks b2a_qp writes follow the data's (CR LF when it has any): made LF here.
    encoded = binascii.b2a_qp(data, istext=False).replace(b"=" + CRLF, b"=" + LF)
    return no_dash_after_soft_break(encoded)


def _lone_breaks(data: bytes) -> bool:
    """Whether data holds a CR or LF that is not part of a CR LF."""
    rest = data.replace(CRLF, b"")
    return b"\r" in rest or b"\n" in rest
