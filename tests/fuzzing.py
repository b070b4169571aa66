"""What the fuzz targets share: their budget and the hostile messages they are fed.

`make test` runs each target for a few examples; `make fuzz` sets ROUTEMAIL_FUZZ to a
multiplier of those (and keeps failures in hypothesis's example database, so a found
case is replayed first next time).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

SCALE = max(1, int(os.environ.get("ROUTEMAIL_FUZZ") or 1))
MAX_BYTES = 1_000_000  # the largest input a target is given


def budget(examples: int, *, shrink: bool = True) -> settings:
    """Settings for a fuzz target: examples in `make test`, SCALE times that under
    `make fuzz`; no deadline (a loaded machine is not a failure). shrink=False for a
    target expected to fail for now: its failure needs no minimal example."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        phases=phases,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )


# Text an author controls: control characters, 8-bit, encoded words, line separators.
hostile_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="latin-1"), max_size=80),
    st.sampled_from(
        [
            "=?utf-8?q?a=0D=0ABcc:_v@ex.net?=",
            "=?l1?q?x=0D=0A=0D=0AGo:_evil?=",
            "caf\u00e9 \u2028 \u0085 \x1b[31m \x00 \x7f",
            "Ann\x1b[2J\x00\x7f\x08 Author",
            "\r.\r\nMAIL FROM:<x@evil.example>",
            "<body" * 20,
            "(" * 300,
        ]
    ),
)
# Runs repeated up to MAX_BYTES: the shapes that make naive scanners slow.
bulk_units = st.sampled_from(
    [
        b"<body",
        b"<html",
        b"</body ",
        b'<a href="x ',
        b"<!--",
        b"x",
        b"y" * 998 + b"\n",
        b"word \n",
        b"\xc3\xa9",
        b"\r",
        b"=\n",
        b"--b\n",
    ]
)


@st.composite
def bulk(draw: st.DrawFn) -> bytes:
    """A unit repeated to a size from tiny to MAX_BYTES (mostly small: big ones are slow
    to check, and a few per run are enough to show the bound)."""
    unit = draw(bulk_units)
    size = draw(st.sampled_from([0, 1, 40, 500, 2_000, 5_000, 10_000, 100_000, MAX_BYTES]))
    return (unit * (size // len(unit) + 1))[:size]


@dataclass(frozen=True)
class Attachment:
    ctype: str
    data: bytes


@st.composite
def attachments(draw: st.DrawFn) -> Attachment:
    ctype = draw(st.sampled_from(["application/octet-stream", "image/png", "application/pdf"]))
    return Attachment(ctype, draw(st.binary(max_size=3_000)))


def _header_line(name: str, text: str, nl: bytes) -> bytes:
    # Folded as an author's client might, or not at all; raw 8-bit bytes as they come.
    value = text.encode("utf-8", "surrogateescape").replace(b"\r", b"").replace(b"\n", b"")
    return name.encode() + b": " + value + nl


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, list[Attachment]]:
    """A message with hostile header text and bodies, and the attachments it carries
    (well formed: the copy must pass them on unchanged)."""
    nl = draw(st.sampled_from([b"\n", b"\r\n"]))
    head = [
        _header_line(
            "From", draw(st.sampled_from(["Ann <ann@example.com>", "ann@example.com"])), nl
        ),
        _header_line("To", "volunteers@lists.example.org", nl),
        _header_line("Subject", draw(hostile_text), nl),
        _header_line(
            draw(st.sampled_from(["X-Note", "Comments", "Keywords"])), draw(hostile_text), nl
        ),
        b"MIME-Version: 1.0" + nl,
    ]
    text = draw(bulk()).replace(b"\n", nl)
    html = b"<html><body>" + draw(bulk()).replace(b"\n", nl) + b"</body></html>"
    files = draw(st.lists(attachments(), max_size=3))
    shape = draw(st.sampled_from(["plain", "html", "alternative", "mixed"]))
    if shape in ("plain", "html") and not files:
        ctype = b"text/plain" if shape == "plain" else b"text/html"
        body = text if shape == "plain" else html
        head.append(b"Content-Type: " + ctype + b"; charset=utf-8" + nl)
        return b"".join(head) + nl + body, []
    parts = [(b"text/plain; charset=utf-8", b"8bit", text)]
    if shape in ("html", "alternative"):
        parts.append((b"text/html; charset=utf-8", b"8bit", html))
    for f in files:
        encoded = base64.encodebytes(f.data).replace(b"\n", nl)
        parts.append((f.ctype.encode() + b"; name=f", b"base64", encoded))
    subtype = b"alternative" if shape == "alternative" and not files else b"mixed"
    head.append(b"Content-Type: multipart/" + subtype + b'; boundary="=_b"' + nl)
    body = b"".join(
        b"--=_b"
        + nl
        + b"Content-Type: "
        + ct
        + nl
        + b"Content-Transfer-Encoding: "
        + cte
        + nl
        + nl
        + data
        + nl
        for ct, cte, data in parts
    )
    return b"".join(head) + nl + body + b"--=_b--" + nl, files
