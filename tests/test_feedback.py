"""Deliverability end to end: SES events over SNS, DSNs by VERP, unsubscribes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailxfer.post import post_message
from routemail import sestags, sidecar
from routemail.config import Bounces
from routemail.feedback import verp_token
from routemail.state import State
from routemail.suppression import Suppression
from tests import snskeys
from tests.conftest import SECRET, Project, Receiver, RunCli, free_port, running_receiver
from tests.mailbox import outbox, recipients

VOLUNTEERS = "volunteers@lists.example.org"
BOARD = "board@lists.example.org"
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
MEMBERS = {"ann@example.com", "bob@example.net", "coordinator@example.org"}


def post_mail(receiver: Receiver, raw: bytes, to: str, **verdicts: str) -> str:
    result = post_message(
        receiver.mailrecv_url, SECRET.encode(), io.BytesIO(raw), [to], PASSING | verdicts
    )
    assert result.status == 200, result.body
    return str(json.loads(result.body)["id"])


def member_post(n: int, sender: str = "ann@example.com", to: str = VOLUNTEERS) -> bytes:
    return (
        f"From: {sender}\nTo: {to}\nSubject: Post {n}\nMessage-ID: <post-{n}@example.com>\n\n"
        f"Message number {n}.\n"
    ).encode()


def run(routemail_cli: RunCli) -> None:
    done = routemail_cli("run")
    assert done.returncode == 0, done.stderr


def post_sns(receiver: Receiver, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        receiver.url + "/ses-events",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def ses_event(
    kind: str, address: str, listname: str, bounce_type: str = "Permanent"
) -> dict[str, Any]:
    """An SES event-publishing record as the configuration set's SNS topic sends it."""
    mail = {
        "messageId": "0100018c-test",
        "source": f"{listname}-bounces@lists.example.org",
        "destination": [address],
        "tags": {"list": [listname], "message": ["abc"]},
    }
    if kind == "Bounce":
        detail = {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "feedbackId": "feedback-1",
            "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1"}],
        }
        return {"eventType": "Bounce", "mail": mail, "bounce": detail}
    detail = {"feedbackId": "feedback-2", "complainedRecipients": [{"emailAddress": address}]}
    return {"eventType": "Complaint", "mail": mail, "complaint": detail}


@pytest.fixture
def sns_receiver(project: Project, tmp_path: Path) -> Iterator[Receiver]:
    """The receiver under gunicorn, given the test SNS certificate through create_app."""
    cert = tmp_path / "sns-cert.pem"
    cert.write_bytes(snskeys.certificate())
    project.write_config(
        project.config_path.read_text() + f'\n[bounces]\nsns_topics = ["{snskeys.TOPIC}"]\n'
    )
    with running_receiver(
        project,
        app="tests.sns_app:app",
        extra_env={"SNS_TEST_CERT": str(cert), "SNS_TEST_LOG": str(tmp_path / "sns-get.log")},
    ) as receiver:
        yield receiver


def suppressed(project: Project) -> list[tuple[str, str, str]]:
    with State.open(project.data_dir) as state:
        return [(e.address, e.list, e.reason) for e in Suppression(state, Bounces()).entries()]


def members_in_file(project: Project, listname: str) -> set[str]:
    import tomllib

    data = tomllib.loads(project.config_path.read_text())
    return set(data["lists"][listname]["members"])


def test_permanent_bounce_suppresses_and_next_post_skips(
    sns_receiver: Receiver, routemail_cli: RunCli
) -> None:
    """A signed SNS bounce for a recipient of a delivered post suppresses the address;
    the next post skips it with a K line naming the reason."""
    project = sns_receiver.project
    post_mail(sns_receiver, member_post(1), VOLUNTEERS)
    run(routemail_cli)
    assert set(recipients(project.data_dir, "Post 1")) == MEMBERS
    status, answer = post_sns(
        sns_receiver, snskeys.signed(ses_event("Bounce", "bob@example.net", "volunteers"))
    )
    assert status == 200, answer
    assert answer["actions"] == ["bob@example.net: suppressed for all lists"]
    assert suppressed(project) == [("bob@example.net", "", "bounce")]
    second = post_mail(sns_receiver, member_post(2), VOLUNTEERS)
    run(routemail_cli)
    assert set(recipients(project.data_dir, "Post 2")) == MEMBERS - {"bob@example.net"}
    skipped = [e for e in project.spool.history(second).events if e.code == sidecar.SKIPPED]
    assert [e.fields[0] for e in skipped] == ["bob@example.net"]
    assert "suppressed: bounce (all lists)" in " ".join(skipped[0].fields)
    listed = json.loads(routemail_cli("suppression", "list", "--json").stdout)
    assert [(e["address"], e["reason"]) for e in listed] == [("bob@example.net", "bounce")]


@pytest.mark.parametrize("forgery", ["bad-signature", "foreign-certificate-host", "wrong-topic"])
def test_forged_sns_changes_nothing(sns_receiver: Receiver, forgery: str) -> None:
    """A forged SNS message is refused with 403 and suppresses nobody."""
    event = ses_event("Bounce", "bob@example.net", "volunteers")
    if forgery == "bad-signature":
        body = snskeys.signed(event)
        body["Message"] = body["Message"].replace("bob@", "ann@")
    elif forgery == "foreign-certificate-host":
        body = snskeys.signed(
            event, cert_url="https://sns.us-east-1.amazonaws.com.evil.example/c.pem"
        )
    else:
        body = snskeys.signed(event, topic="arn:aws:sns:us-east-1:666666666666:attacker")
    status, answer = post_sns(sns_receiver, body)
    assert status == 403
    assert answer["error"].startswith("not a verified SNS message")
    assert suppressed(sns_receiver.project) == []


def test_unsigned_junk_is_refused(sns_receiver: Receiver) -> None:
    """Something that is not JSON at all gets a 400, not a traceback."""
    request = urllib.request.Request(sns_receiver.url + "/ses-events", data=b"\xff{", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    with caught.value as error:
        assert error.code == 400
        assert json.loads(error.read())["error"] == "expected an SNS message (JSON)"


def test_subscription_is_confirmed(sns_receiver: Receiver, tmp_path: Path) -> None:
    """A verified SubscriptionConfirmation makes the receiver GET its SubscribeURL."""
    url = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc"
    body = snskeys.signed(
        "You have chosen to subscribe",
        kind="SubscriptionConfirmation",
        extra={"SubscribeURL": url, "Token": "abc"},
    )
    status, answer = post_sns(sns_receiver, body)
    assert (status, answer) == (200, {"confirmed": True})
    assert (tmp_path / "sns-get.log").read_text().splitlines() == [url]


def test_complaint_unsubscribes_from_the_right_list(
    sns_receiver: Receiver, routemail_cli: RunCli
) -> None:
    """A complaint about board mail removes the member from board only, and suppresses
    the address for board."""
    project = sns_receiver.project
    assert "ann@example.com" in members_in_file(project, "board")
    status, _ = post_sns(
        sns_receiver, snskeys.signed(ses_event("Complaint", "ann@example.com", "board"))
    )
    assert status == 200
    assert "ann@example.com" not in members_in_file(project, "board")
    assert "ann@example.com" in members_in_file(project, "volunteers")
    assert suppressed(project) == [("ann@example.com", "board", "complaint")]
    assert routemail_cli("check").returncode == 0


def test_one_click_unsubscribe_from_a_real_copy(receiver: Receiver, routemail_cli: RunCli) -> None:
    """The URL in a delivered copy's List-Unsubscribe: GET shows a button and changes
    nothing; a POST of List-Unsubscribe=One-Click removes the member from lists.toml."""
    project = receiver.project
    post_mail(receiver, member_post(3), VOLUNTEERS)
    run(routemail_cli)
    copy = next(c for c in outbox(project.data_dir) if c.recipient == "bob@example.net")
    assert copy.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https = re.search(r"<(https://[^>]+)>", str(copy.message["List-Unsubscribe"]))
    assert https is not None
    path = urllib.parse.urlsplit(https.group(1))
    local = f"{receiver.url}{path.path}?{path.query}"
    with urllib.request.urlopen(local, timeout=10) as page:
        html = page.read().decode()
    assert 'name="List-Unsubscribe" value="One-Click"' in html
    assert "bob@example.net" in members_in_file(project, "volunteers")
    data = urllib.parse.urlencode({"List-Unsubscribe": "One-Click"}).encode()
    with urllib.request.urlopen(urllib.request.Request(local, data=data), timeout=10) as done:
        assert done.status == 200
    assert "bob@example.net" not in members_in_file(project, "volunteers")
    forged = local.replace("bob%40example.net", "ann%40example.com").replace(
        "bob@example.net", "ann@example.com"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(forged, data=data), timeout=10)
    caught.value.close()
    assert caught.value.code == 400
    assert "ann@example.com" in members_in_file(project, "volunteers")


def test_mailto_unsubscribe(receiver: Receiver, routemail_cli: RunCli) -> None:
    """Mail from a member to <list>-unsubscribe@ removes that member once its verdicts pass."""
    project = receiver.project
    address = "volunteers-unsubscribe@lists.example.org"
    failing = post_mail(receiver, member_post(4, to=address), address, dkim="FAIL", dmarc="FAIL")
    run(routemail_cli)
    assert "ann@example.com" in members_in_file(project, "volunteers")
    assert project.spool.history(failing).discarded
    post_mail(receiver, member_post(5, to=address), address)
    run(routemail_cli)
    assert "ann@example.com" not in members_in_file(project, "volunteers")


def test_transient_bounces_disable_at_threshold(project: Project) -> None:
    """Transient bounces count once a day, decay after a quiet period, and disable
    delivery at the threshold."""
    now = [1_000_000.0]
    with State(project.data_dir / "state.sqlite3", clock=lambda: now[0]) as state:
        s = Suppression(state, Bounces(threshold=3, decay_days=7))
        assert s.transient_bounce("bob@example.net", "test") == "score 1 of 3"
        now[0] += 3600
        assert "already counted today" in s.transient_bounce("bob@example.net", "test")
        now[0] += 86400
        assert s.transient_bounce("bob@example.net", "test") == "score 2 of 3"
        now[0] += 8 * 86400
        assert s.transient_bounce("bob@example.net", "test") == "score 1 of 3"
        for _ in range(2):
            now[0] += 86400
            action = s.transient_bounce("bob@example.net", "test")
        assert action == "score 3 of 3; delivery disabled"
        assert s.reason("bob@example.net", "volunteers") == "disabled (all lists)"
        assert len(s.history()) == 6


@dataclass
class Sink:
    """An SMTP server on loopback that keeps every envelope."""

    mail: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mail.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def dsn_for(recipient: str, envelope_to: str, original: bytes) -> bytes:
    """A delivery status notification (RFC 3464) reporting a permanent failure."""
    return (
        (
            f"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
            f"To: {envelope_to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <dsn-{recipient}@mx.example.net>\r\nAuto-Submitted: auto-replied\r\n"
            f"MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
            f"--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
            f"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.example.net\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 No such user\r\n"
            f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        ).encode()
        + original.split(b"\r\n\r\n")[0]
        + b"\r\n--b--\r\n"
    )


def test_dsn_to_verp_address_is_attributed(receiver: Receiver, routemail_cli: RunCli) -> None:
    """With SMTP each copy's envelope sender is <list>-bounces+<token>; a DSN sent back to
    it suppresses exactly the recipient it was for, and forged tokens do nothing."""
    project = receiver.project
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        project.write_config(
            project.config_path.read_text() + f'\n[delivery]\ntransport = "smtp"\nrate = 1000\n'
            f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {controller.port}\ntls = "none"\n'
        )
        post = post_mail(receiver, member_post(6), VOLUNTEERS)
        run(routemail_cli)
        senders = {rcpts[0]: sender for sender, rcpts, _ in sink.mail}
        assert set(senders) == MEMBERS
        assert all(
            re.fullmatch(r"volunteers-bounces\+[a-z2-7]{10}@lists\.example\.org", s)
            for s in senders.values()
        )
        assert len(set(senders.values())) == 3
        original = next(c for _, r, c in sink.mail if r == ["bob@example.net"])
        forged_to = re.sub(r"\+[a-z2-7]+@", "+aaaaaaaaaa@", senders["ann@example.com"])
        forged = post_mail(receiver, dsn_for("ann@example.com", forged_to, original), forged_to)
        run(routemail_cli)
        assert suppressed(project) == []
        assert project.spool.history(forged).discarded
        bob = senders["bob@example.net"]
        # A DSN on bob's token returning another message's headers (one bob never got)
        # scores the bounce but writes nothing on that message.
        other = post_mail(receiver, member_post(8, to="board@lists.example.org"), BOARD)
        run(routemail_cli)
        other_copy = member_post(8, to="board@lists.example.org").replace(b"\n", b"\r\n")
        foreign = post_mail(receiver, dsn_for("bob@example.net", bob, other_copy), bob)
        run(routemail_cli)
        assert not [e for e in project.spool.history(other).events if e.code == "B"]
        assert (
            "on no timeline: no copy to bob@example.net was sent"
            in routemail_cli("show", foreign).stdout
        )
        dsn = post_mail(receiver, dsn_for("bob@example.net", bob, original), bob)
        run(routemail_cli)
        assert suppressed(project) == [("bob@example.net", "", "bounce")]
        (bounced,) = [e for e in project.spool.history(post).events if e.code == "B"]
        assert bounced.fields[:2] == ("bob@example.net", f"dsn:{dsn}")
        assert " ".join(bounced.fields[2:]) == "Permanent: 5.1.1 smtp; 550 5.1.1 No such user"
        sink.mail.clear()
        post_mail(receiver, member_post(7), VOLUNTEERS)
        run(routemail_cli)
        assert {r[0] for _, r, _ in sink.mail} == MEMBERS - {"bob@example.net"}
    finally:
        controller.stop()


def test_complaint_from_the_administrator_is_recorded_not_an_error(
    sns_receiver: Receiver,
) -> None:
    """A complaint by the list's administrator suppresses their list mail but cannot
    unsubscribe them, and the endpoint still answers 200 so SNS stops retrying."""
    project = sns_receiver.project
    event = ses_event("Complaint", "coordinator@example.org", "volunteers")
    status, answer = post_sns(sns_receiver, snskeys.signed(event))
    assert status == 200, answer
    assert "still a member" in answer["actions"][0]
    assert "coordinator@example.org" in members_in_file(project, "volunteers")
    assert suppressed(project) == [("coordinator@example.org", "volunteers", "complaint")]


def test_list_names_survive_ses_tags(sns_receiver: Receiver) -> None:
    """SES tags cannot hold '.' or '+': the list tag is encoded reversibly, so a
    complaint about team.a mail unsubscribes from team.a."""
    project = sns_receiver.project
    project.write_config(
        project.config_path.read_text() + '\n[lists."team.a"]\nmoderators = ["chair@example.org"]\n'
        'members = ["chair@example.org", "zoe@example.net"]\n'
    )
    event = ses_event("Complaint", "zoe@example.net", sestags.encode("team.a"))
    assert event["mail"]["tags"]["list"] == ["team_2ea"]
    status, answer = post_sns(sns_receiver, snskeys.signed(event))
    assert status == 200
    assert answer["actions"] == ["zoe@example.net: suppressed for team.a; unsubscribed from team.a"]
    assert members_in_file(project, "team.a") == {"chair@example.org"}
    assert suppressed(project) == [("zoe@example.net", "team.a", "complaint")]


@pytest.mark.parametrize("recipient", ["bob@example.com", "Ann.Lee+x@example.net", "é@example.org"])
def test_verp_tokens_are_those_of_copies_already_sent(recipient: str) -> None:
    """The token is the first 10 base32 characters of the HMAC over the whole digest,
    as before it was computed from its first 10 bytes: bounces to copies already
    out still find their recipient."""
    secret = b"s" * 32
    text = f"verp\nvolunteers\n{recipient}".encode()
    whole = hmac.new(secret, text, hashlib.sha256).digest()
    expected = base64.b32encode(whole).decode("ascii").lower()[:10]
    assert verp_token(secret, "volunteers", recipient) == expected
