"""Property tests: whatever bytes arrive, the copy is made or refused with CopyError."""

from __future__ import annotations

import binascii
import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routemail.copy import CopyError, CopyMaker
from routemail.rewrite.qp import quoted_printable
from tests.copy_support import NOW, RECIPIENT, check_sendable, identity
from tests.fuzzing import SCALE

IN = Path(__file__).parent / "data" / "copy" / "in"
CORPUS = [p.read_bytes() for p in sorted(IN.glob("*.eml"))]
# `make test` tries the same 300 cases every run (CI is not a lottery); `make fuzz`
# searches SCALE times as many new ones each time.
SETTINGS = settings(
    max_examples=300 * SCALE,
    derandomize=SCALE == 1,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

header_names = st.sampled_from(
    [
        "From",
        "To",
        "Subject",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
        "Reply-To",
        "List-Id",
        "DKIM-Signature",
        "X-Odd",
        "Date",
        "Message-ID",
    ]
)
header_values = st.one_of(
    st.binary(max_size=60),
    st.sampled_from(
        [
            b" multipart/mixed; boundary=b",
            b' multipart/alternative; boundary="x"',
            b" text/plain; charset=iso-2022-jp",
            b" text/html; charset=utf-16",
            b" base64",
            b" quoted-printable",
            b" =?utf-8?q?=C3=A9?=",
            b" Ann <ann@example.com>",
            b" <>",
            b' text/plain; charset="\xff"',
            b" multipart/signed; boundary=s",
            b" x-uue",
        ]
    ),
)
body_lines = st.one_of(
    st.binary(max_size=80),
    st.sampled_from(
        [
            b"--b",
            b"--b--",
            b"--x",
            b"--x--",
            b"--s",
            b"Content-Type: text/html",
            b"",
            b"=C3=A9=",
            b"PGh0bWw+",
            b"<body>",
            b"</body>",
            b"\x1b$B",
            b"\r",
        ]
    ),
)


def attempt(raw: bytes) -> bytes | None:
    try:
        # A fixed time: the unsubscribe link's token (and so the copy) is the same for
        # the same input in every run, and a failure replays.
        maker = CopyMaker(raw, identity(header="Hi {recipient}"), now=NOW)
    except CopyError as exc:
        assert not exc.unexpected, exc
        return None
    return maker.copy_for(RECIPIENT)


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_anything_but_copy_error(raw: bytes) -> None:
    """Random bytes give a copy or a CopyError, never another exception."""
    attempt(raw)


@SETTINGS
@given(
    st.lists(st.tuples(header_names, header_values), min_size=1, max_size=8),
    st.lists(body_lines, max_size=30),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_message_shaped_input_gives_a_sendable_copy(
    fields: list[tuple[str, bytes]], lines: list[bytes], nl: bytes
) -> None:
    """Headers and MIME-ish bodies, however broken, give a strictly parseable copy."""
    raw = b"".join(n.encode() + b":" + v + nl for n, v in fields) + nl + nl.join(lines)
    data = attempt(raw)
    if data is not None:
        check_sendable(data)


@SETTINGS
@given(st.sampled_from(CORPUS), st.integers(min_value=0), st.binary(min_size=1, max_size=20))
def test_damaged_real_messages_never_crash(raw: bytes, where: int, junk: bytes) -> None:
    """A real message with bytes overwritten somewhere gives a copy or a CopyError."""
    at = where % len(raw)
    attempt(raw[:at] + junk + raw[at + len(junk) :])


@SETTINGS
@given(st.text(alphabet="-x=é \n", max_size=400))
def test_quoted_printable_decodes_alike_and_no_soft_break_starts_with_a_dash(text: str) -> None:
    """quoted_printable() decodes to what binascii's encoding decodes to, in lines of at
    most 76 characters, and no line after a soft break starts with "-"."""
    data = text.encode()
    out = quoted_printable(data)
    assert binascii.a2b_qp(out) == binascii.a2b_qp(binascii.b2a_qp(data, istext=True))
    lines = out.split(b"\n")
    assert max(map(len, lines)) <= 76
    assert not any(a.endswith(b"=") and b.startswith(b"-") for a, b in itertools.pairwise(lines))
