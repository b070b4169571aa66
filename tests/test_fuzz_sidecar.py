"""Fuzz target: the sidecar parser. Whatever a sidecar holds (lines routemail wrote with
text from mail in them, torn writes, bytes from elsewhere), reading it never fails, and
what routemail wrote reads back as written."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from routemail import sidecar
from routemail.spool import Spool
from tests.fuzzing import MAX_BYTES, budget, hostile_text

MESSAGE = b"From: ann@example.com\nTo: volunteers@lists.example.org\nSubject: hi\n\nHi\n"
WHEN = sidecar.parse_time("2026-12-02T15:00:00Z")
codes = st.sampled_from([*sorted(sidecar.TIMESTAMPED), sidecar.VERDICTS])
# Fields as routing writes them: addresses and list names, then free text at the end
# (reasons, SMTP replies, header text). An empty field is not written (it would read
# back as no field at all, moving the ones after it).
words = st.lists(st.from_regex(r"[a-z0-9.@+-]{1,30}", fullmatch=True), max_size=3)
last = hostile_text.filter(lambda t: bool(t.split()))
events = st.builds(
    lambda code, first, text: sidecar.event(code, *first, *text),
    codes,
    words,
    st.lists(last, max_size=1),
)


def text_of(evs: list[sidecar.Event]) -> str:
    return "".join(e.format() for e in evs)


@budget(40)
@given(
    st.one_of(
        st.text(max_size=2_000),
        st.binary(max_size=2_000).map(lambda b: b.decode("utf-8", "replace")),
    )
)
def test_any_text_parses(text: str) -> None:
    """parse never raises; each event it returns writes back as one line."""
    for e in sidecar.parse(text):
        line = e.format()
        assert line.endswith("\n") and len(line.splitlines()) == 1
    sidecar.summary_state(sidecar.History.of(sidecar.parse(text)), pending=False)


@budget(15)
@example([sidecar.event("S", "ann@example.com", when=WHEN)], 50_000, sidecar.event("L", "x"), 9)
@given(
    st.lists(events, max_size=20),
    st.integers(1, 10),
    events,
    st.integers(0, 200),
)
def test_written_events_read_back_and_a_torn_tail_is_ignored(
    evs: list[sidecar.Event], repeat: int, cut: sidecar.Event, at: int
) -> None:
    """Events appended through the spool (with hostile text in their fields, up to 1 MB
    of lines) read back as they were written; a last line cut short is ignored."""
    written = text_of(evs)
    if written:  # the explicit example fills it to about MAX_BYTES
        written *= min(repeat, MAX_BYTES // len(written.encode()) or 1)
    torn = cut.format()[: min(at, len(cut.format()) - 1)]
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "maillist").ensure()
        msg_id = spool.receive(MESSAGE, ["volunteers@lists.example.org"], {}).id
        before = spool.read_sidecar(msg_id)
        spool.append(msg_id, sidecar.parse(written))
        with spool.sidecar_path(msg_id).open("ab") as f:
            f.write(torn.encode("utf-8", "surrogateescape"))
        read = spool.read_sidecar(msg_id)
        assert text_of(sidecar.parse(read)) == text_of(sidecar.parse(before + written))
        assert text_of(sidecar.parse(written)) == written
