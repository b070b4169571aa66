"""Hostile and broken messages never break a run: each ends delivered, held or dropped."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routemail import config as configuration
from routemail.actionlog import ActionLog
from routemail.route import Router
from routemail.sidecar import summary_state
from routemail.spool import Spool
from tests.conftest import BASE_CONFIG

LISTS = ["volunteers@lists.example.org", "board@lists.example.org", "nobody@lists.example.org"]
FROMS = [
    "ann@example.com",
    "Ann <ann@example.com>",
    "=?utf-8?b?w6lt?= <chair@example.org>",
    "<>",
    "",
    "a@b@c",
    "\udcff@example.com",
]
header_names = st.sampled_from(
    ["Subject", "Content-Type", "Content-Transfer-Encoding", "List-Id", "MIME-Version", "X-Junk"]
)
header_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            'multipart/mixed; boundary="b"',
            "multipart/signed; boundary=",
            "text/plain; charset=unknown-8bit",
            "base64",
            "quoted-printable",
            "=?bogus?q?x?=",
        ]
    ),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"--b\n\nno close\n", b"--b\nContent-Type: text/plain\n\nx\n--b--\n"]),
)


def run_once(root: Path, raw: bytes, destinations: list[str]) -> str:
    config_path = root / "lists.toml"
    config_path.write_text(BASE_CONFIG + "\n[delivery]\nrate = 100000\n")
    config = configuration.load(config_path)
    spool = Spool(root / "data" / "maillist").ensure()
    msg_id = spool.receive(raw, destinations, dict.fromkeys(configuration.VERDICT_NAMES, "PASS")).id
    log = ActionLog(spool.root / "log")
    router = Router(config, spool, log)
    try:
        error = router.process(msg_id)
    finally:
        router.close()
        log.close()
    assert error is None, error
    return summary_state(spool.history(msg_id), spool.is_pending(msg_id))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sender=st.sampled_from(FROMS),
    headers=st.lists(st.tuples(header_names, header_values), max_size=6),
    body=bodies,
    destinations=st.lists(st.sampled_from(LISTS), min_size=1, max_size=3, unique=True),
)
def test_any_message_is_routed_to_an_end(
    sender: str, headers: list[tuple[str, str]], body: bytes, destinations: list[str]
) -> None:
    """Whatever the headers and body, one run routes the message without an error and
    leaves it done, held or discarded, never pending."""
    head = f"From: {sender}\n" + "".join(f"{n}: {v}\n" for n, v in headers)
    raw = head.encode("utf-8", "surrogateescape") + b"\n" + body
    with tempfile.TemporaryDirectory() as tmp:
        assert run_once(Path(tmp), raw, destinations) in {"done", "held", "discarded"}
