"""A Message-ID is not a key anyone can take: the real receiver under gunicorn, then
`routemail run`, with an attacker who reuses the Message-ID of a queued post."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from mailxfer.post import post_message
from routemail import config as configuration
from routemail import moderate, sidecar
from tests.conftest import BASE_CONFIG, SECRET, Project, Receiver, RunCli
from tests.mailbox import moderation_requests, recipients
from tests.smtp_relay import Recorder, relay_for

VOLUNTEERS = "volunteers@lists.example.org"
HELPERS = "helpers@lists.example.org"
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
HELPERS_LIST = """
[lists.helpers]
members = ["ann@example.com", "dan@example.net"]
"""
MESSAGE_ID = "<shift-7@example.com>"


def message(
    sender: str = "Ann Author <ann@example.com>",
    to: str = VOLUNTEERS,
    subject: str = "Shift swap",
    body: str = "Can anyone take my Saturday shift?\n",
    trace: str = "Received: from mx1.example.com by inbound-smtp; Mon, 23 Nov 2026 10:00:00\n",
) -> bytes:
    head = f"{trace}From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: {MESSAGE_ID}\n"
    return (head + "\n" + body).encode()


ATTACK = message(
    sender="Mallory <mallory@evil.example>",
    subject="Re: Shift swap",
    body="Same Message-ID, other message.\n",
    trace="Received: from mx9.evil.example by inbound-smtp; Mon, 23 Nov 2026 11:00:00\n",
)


def post(receiver: Receiver, raw: bytes, *to: str) -> dict[str, object]:
    result = post_message(
        receiver.mailrecv_url, SECRET.encode(), io.BytesIO(raw), list(to), PASSING
    )
    assert result.status == 200, result.body
    answer: dict[str, object] = json.loads(result.body)
    return answer


def run(routemail_cli: RunCli, *, deferring: bool = False) -> None:
    """`routemail run`, which must succeed (exit status 3: some mail waits for a retry)."""
    done = routemail_cli("run")
    assert done.returncode in ((0, 3) if deferring else (0,)), done.stderr


def members(project: Project, listname: str) -> list[str]:
    return list(configuration.load(project.config_path).lists[listname].members)


def test_same_message_redelivered_for_another_list_is_one_copy_per_address(
    receiver: Receiver, routemail_cli: RunCli
) -> None:
    """The same post delivered twice by SES (other Received lines, CRLF), once for each of
    two lists, is one entry, and an address on both lists gets one copy."""
    project = receiver.project
    project.write_config(BASE_CONFIG + HELPERS_LIST)
    first = post(receiver, message(), VOLUNTEERS)
    redelivered = message(trace="Received: from mx2.example.com by inbound-smtp; Mon\n")
    second = post(receiver, redelivered.replace(b"\n", b"\r\n"), HELPERS)
    assert (second["id"], second["duplicate"]) == (first["id"], True)
    run(routemail_cli)
    assert recipients(project.data_dir, "Shift swap") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
        "dan@example.net": 1,
    }


def test_reused_message_id_cannot_resend_a_delivered_post_to_another_list(
    receiver: Receiver, routemail_cli: RunCli
) -> None:
    """A different message reusing a delivered post's Message-ID, sent to another list,
    does not send that post there: it is an entry of its own, routed on its own (held:
    its sender is no member)."""
    project = receiver.project
    project.write_config(BASE_CONFIG + HELPERS_LIST)
    original = post(receiver, message(), VOLUNTEERS)
    run(routemail_cli)
    attack = post(receiver, ATTACK, HELPERS)
    assert (attack["id"] != original["id"], attack["duplicate"]) == (True, False)
    run(routemail_cli)
    assert recipients(project.data_dir, "Shift swap") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        "coordinator@example.org": 1,
    }
    assert project.spool.history(str(original["id"])).destinations == [VOLUNTEERS]
    assert project.spool.history(str(attack["id"])).held_lists == {"helpers"}
    held = moderation_requests(project.data_dir)
    assert [str(r.message["Subject"]) for r in held] == [
        "Moderation needed for helpers: Re: Shift swap"
    ]


def test_reused_message_id_cannot_unsubscribe_the_original_author(
    receiver: Receiver, routemail_cli: RunCli
) -> None:
    """A different message reusing a member's Message-ID, sent to LIST-unsubscribe@, is
    about its own sender: the member stays subscribed."""
    project = receiver.project
    post(receiver, message(), VOLUNTEERS)
    run(routemail_cli)
    attack = post(receiver, ATTACK, "volunteers-unsubscribe@lists.example.org")
    run(routemail_cli)
    assert "ann@example.com" in members(project, "volunteers")
    log = next((project.data_dir / "maillist" / "log").iterdir()).read_text()
    assert f"{attack['id']} unsubscribe request: mallory@evil.example is not a member" in log


@pytest.mark.parametrize(
    ("raw", "destination"),
    [
        (message(sender="Eve <eve@outside.example>"), "volunteers-bounces@lists.example.org"),
        (ATTACK, "volunteers-bounces@lists.example.org"),
        (ATTACK, "volunteers-unsubscribe@lists.example.org"),
        (ATTACK, "approval"),
    ],
    ids=["same-message-to-bounces", "other-to-bounces", "other-to-unsubscribe", "other-approval"],
)
def test_a_held_post_is_settled_only_by_moderation(
    receiver: Receiver, routemail_cli: RunCli, raw: bytes, destination: str
) -> None:
    """A held post stays held whatever arrives with its Message-ID: the same message again
    for an address that discards it (which settles that address only), or a different
    message for a bounce, unsubscribe or approval address. A moderator's approval then
    delivers it."""
    project = receiver.project
    held = post(receiver, message(sender="Eve <eve@outside.example>"), VOLUNTEERS)
    held_id = str(held["id"])
    run(routemail_cli)
    assert project.spool.history(held_id).held_lists == {"volunteers"}
    if destination == "approval":  # a reply to the held post's approval address, forged token
        site = configuration.load(project.config_path).site
        destination = moderate.approval_address(b"not the secret", held_id, "volunteers", site)
    post(receiver, raw, destination)
    run(routemail_cli)
    history = project.spool.history(held_id)
    assert history.held_lists == {"volunteers"}
    assert not history.discarded
    approved = routemail_cli("approve", held_id, "volunteers")
    assert approved.returncode == 0, approved.stderr
    run(routemail_cli)
    assert len(recipients(project.data_dir, "Shift swap")) == 3


@pytest.fixture
def slow_relay(project: Project) -> Iterator[Recorder]:
    """An SMTP server on loopback that refuses slow@… twice (454), and the project's
    delivery configured to use it, with one try per run."""
    helpers = '\n[lists.helpers]\nmembers = ["ann@example.com", "slow@example.com"]\n'
    with relay_for(project, "retries = 0\nmax_attempts = 5\n", helpers) as relay:
        yield relay


@pytest.mark.parametrize(
    "raw", [message(to=HELPERS), ATTACK], ids=["same-message", "other-message"]
)
def test_a_post_waiting_for_smtp_retries_is_not_cancelled(
    project: Project, slow_relay: Recorder, routemail_cli: RunCli, raw: bytes
) -> None:
    """A post waiting to retry a recipient over SMTP keeps retrying after mail with its
    Message-ID reaches an address that discards it, until the recipient has its copy."""
    receipt = project.spool.receive(message(to=HELPERS), [HELPERS], PASSING)
    run(routemail_cli, deferring=True)
    history = project.spool.history(receipt.id)
    assert [e.fields[0] for e in history.events if e.code == sidecar.FAILED] == ["slow@example.com"]
    project.spool.receive(raw, ["helpers-bounces@lists.example.org"], PASSING)
    for _ in range(2):
        run(routemail_cli, deferring=True)
    delivered = [m.recipients for m in slow_relay.messages]
    assert delivered == [["ann@example.com"], ["slow@example.com"]]
    assert project.spool.history(receipt.id).has(sidecar.LIST_SENT, "helpers")
