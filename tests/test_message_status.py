"""What became of a message, end to end: the receiver under gunicorn, `routemail run` over
SES (moto server), signed SNS notifications at /ses-events, then the status API,
`routemail show` and the webhooks tell sent, delivered, bounced and complained apart."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from mailxfer.post import post_message
from routemail import passwords, sestags
from routemail.state import State
from tests import snskeys
from tests.conftest import (
    BASE_CONFIG,
    SECRET,
    Project,
    Receiver,
    RunCli,
    running_receiver,
)
from tests.webhook_receiver import WEBHOOK_SECRET, HookReceiver, serve

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
VOLUNTEERS = "volunteers@lists.example.org"
SEND_KEY = "status-send-key-0123456789"
PASSWORD = "correct horse battery"
MODERATOR = "coordinator@example.org"  # moderates volunteers
OTHER = "chair@example.org"  # moderates board only
POST = (
    b"From: Ann Author <ann@example.com>\r\nTo: volunteers@lists.example.org\r\n"
    b"Subject: Saturday shifts\r\nMessage-ID: <status-1@example.com>\r\n\r\nWho can help?\r\n"
)


@dataclass
class Site:
    project: Project
    receiver: Receiver
    hooks: HookReceiver
    moto_url: str
    cli: RunCli


@pytest.fixture
def site(
    project: Project,
    tmp_path: Path,
    moto_url: str,
    routemail_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    """A site sending through moto's SES, taking SNS notifications signed by the test
    certificate, with a webhook receiver and accounts for two moderators."""
    ses: Any = boto3.client("sesv2", endpoint_url=moto_url, region_name="us-east-1")
    ses.create_email_identity(EmailIdentity="lists.example.org")
    ses.close()
    monkeypatch.setenv("ROUTEMAIL_WEBHOOK_SECRET", WEBHOOK_SECRET)
    cert = tmp_path / "sns-cert.pem"
    cert.write_bytes(snskeys.certificate())
    with serve(HookReceiver(failures=0)) as hooks:
        project.write_config(
            BASE_CONFIG
            + f"""
[delivery]
transport = "ses"
rate = 1000

[delivery.ses]
region = "us-east-1"
endpoint_url = "{moto_url}"

[bounces]
sns_topics = ["{snskeys.TOPIC}"]

[webhooks]
urls = ["{hooks.url}"]
events = ["sent", "delivered", "bounced", "complained"]
"""
        )
        with State.open(project.data_dir) as state:
            for who in (MODERATOR, OTHER):
                state.put_pending_account(who)
                with state.transaction() as db:
                    state.verify_account(db, who, passwords.hash_password(PASSWORD))
        with running_receiver(
            project,
            app="tests.sns_app:app",
            extra_env={
                "SNS_TEST_CERT": str(cert),
                "SNS_TEST_LOG": str(tmp_path / "sns-get.log"),
                "ROUTEMAIL_SEND_KEY": SEND_KEY,
            },
        ) as receiver:
            yield Site(project, receiver, hooks, moto_url, routemail_cli)


def get(site: Site, path: str, auth: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": auth} if auth else {}
    request = urllib.request.Request(site.receiver.url + "/api/v1" + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def basic(who: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{who}:{password}".encode()).decode()


def post_sns(site: Site, body: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        site.receiver.url + "/ses-events",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def sns(site: Site, event: dict[str, Any]) -> dict[str, Any]:
    status, answer = post_sns(site, snskeys.signed(event))
    assert status == 200, answer
    return answer


def ses_ids(site: Site) -> dict[str, str]:
    """recipient: the MessageId SES (moto) gave each copy it took."""
    with urllib.request.urlopen(site.moto_url + "/moto-api/data.json", timeout=10) as answer:
        data = json.load(answer)
    return {m["destinations"][0]: m["id"] for m in data["ses"]["RawMessage"]}


def event(kind: str, msg_id: str, recipient: str, ses_id: str, listname: str) -> dict[str, Any]:
    """An SES event-publishing record for one copy, tagged as the ses transport tags it."""
    mail = {
        "timestamp": "2026-11-23T19:52:13.000Z",
        "messageId": ses_id,
        "source": f"{listname}-bounces@lists.example.org",
        "destination": [recipient],
        "tags": {"list": [sestags.encode(listname)], "message": [sestags.encode(msg_id)]},
    }
    body: dict[str, Any] = {
        "Delivery": {
            "timestamp": "2026-11-23T19:52:14.000Z",
            "recipients": [recipient],
            "smtpResponse": "250 2.6.0 Message received",
        },
        "Bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "feedbackId": f"fb-bounce-{recipient}",
            "bouncedRecipients": [
                {"emailAddress": recipient, "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
            ],
        },
        "Complaint": {
            "feedbackId": f"fb-complaint-{recipient}",
            "complaintFeedbackType": "abuse",
            "complainedRecipients": [{"emailAddress": recipient}],
        },
    }[kind]
    return {"eventType": kind, "mail": mail, kind.lower(): body}


def test_status_api_show_and_webhooks_tell_sent_from_delivered(site: Site) -> None:
    """After a post went out through SES, SES's reports arriving over SNS make ann
    delivered then complained, bob bounced and coordinator delivered, in the API, in
    `routemail show` and in the webhooks; a report arriving twice counts once."""
    posted = post_message(
        site.receiver.mailrecv_url, SECRET.encode(), io.BytesIO(POST), [VOLUNTEERS], PASSING
    )
    msg_id = json.loads(posted.body)["id"]
    ran = site.cli("run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    status, sent = get(site, f"/messages/{msg_id}", basic(MODERATOR))
    assert status == 200, sent
    assert {r["address"]: r["status"] for r in sent["recipients"]} == {
        "ann@example.com": "sent",
        "bob@example.net": "sent",
        "coordinator@example.org": "sent",
    }
    ids = ses_ids(site)
    assert {r["address"]: r["sent"]["detail"] for r in sent["recipients"]} == {
        a: ids[a] for a in ("ann@example.com", "bob@example.net", MODERATOR)
    }

    for kind, who in [
        ("Delivery", "ann@example.com"),
        ("Delivery", MODERATOR),
        ("Bounce", "bob@example.net"),
        ("Delivery", "ann@example.com"),  # SNS delivers it again, with another MessageId
        ("Complaint", "ann@example.com"),
    ]:
        answer = sns(site, event(kind, msg_id, who, ids[who], "volunteers"))
        assert answer["timeline"] and f"on the timeline of {msg_id}" in answer["timeline"][0]

    status, view = get(site, f"/messages/{msg_id}", basic(MODERATOR))
    assert status == 200
    assert view["id"] == msg_id and view["state"] == "done"
    assert view["subject"] == "Saturday shifts" and view["from"] == "ann@example.com"
    assert view["received"]["destinations"] == [VOLUNTEERS]
    assert view["received"]["verdicts"] == PASSING
    (volunteers,) = view["lists"]
    assert volunteers["list"] == "volunteers" and volunteers["status"] == "finished"
    people = {r["address"]: r for r in view["recipients"]}
    assert {a: r["status"] for a, r in people.items()} == {
        "ann@example.com": "complained",
        "bob@example.net": "bounced",
        "coordinator@example.org": "delivered",
    }
    ann, bob = people["ann@example.com"], people["bob@example.net"]
    assert ann["delivered"] == {
        "at": "2026-11-23T19:52:14Z",
        "detail": "250 2.6.0 Message received",
        "ref": f"ses:{ids['ann@example.com']}",
    }
    assert ann["complained"]["detail"] == "abuse"
    assert bob["bounced"]["detail"] == "Permanent/General: smtp; 550 5.1.1 user unknown"
    assert bob["delivered"] is None and bob["sent"]["detail"] == ids["bob@example.net"]
    sidecar = site.project.spool.read_sidecar(msg_id)
    assert sum(line.startswith("Y ") for line in sidecar.splitlines()) == 2

    shown = site.cli("show", msg_id)
    assert shown.returncode == 0, shown.stderr
    rows = shown.stdout.split("recipients:\n")[1].splitlines()
    assert [row.split()[:2] for row in rows] == [
        ["ann@example.com", "complained"],
        ["bob@example.net", "bounced"],
        ["coordinator@example.org", "delivered"],
    ]
    assert rows[1].endswith("Permanent/General: smtp; 550 5.1.1 user unknown")
    as_json = json.loads(site.cli("show", "--json", msg_id).stdout)
    assert as_json["recipients"] == view["recipients"]

    # Events from /ses-events wait in data/webhooks until a run or this delivers them.
    assert site.cli("webhooks", "--deliver").returncode == 0
    hooks = [(e["type"], e["address"], e["message"]) for e in site.hooks.accepted]
    assert sorted(set(hooks)) == sorted(hooks)  # nothing twice
    assert set(hooks) == {
        ("sent", "ann@example.com", msg_id),
        ("sent", "bob@example.net", msg_id),
        ("sent", MODERATOR, msg_id),
        ("delivered", "ann@example.com", msg_id),
        ("delivered", MODERATOR, msg_id),
        ("bounced", "bob@example.net", msg_id),
        ("complained", "ann@example.com", msg_id),
    }
    (bounced,) = [e for e in site.hooks.accepted if e["type"] == "bounced"]
    assert bounced["detail"] == "Permanent/General: smtp; 550 5.1.1 user unknown"
    assert bounced["permanent"] is True and bounced["list"] == "volunteers"
    listed = site.cli("suppression", "list").stdout
    assert "bounce: Permanent/General" in listed and "550" not in listed


def test_who_may_see_a_message(site: Site) -> None:
    """Moderators of the message's lists see it; another list's moderator, a wrong
    password and the send key get answers that do not reveal whether the id exists;
    transactional mail is the send key's to see."""
    posted = post_message(
        site.receiver.mailrecv_url, SECRET.encode(), io.BytesIO(POST), [VOLUNTEERS], PASSING
    )
    msg_id = json.loads(posted.body)["id"]
    made_up = "A" * 22
    assert get(site, f"/messages/{msg_id}", basic(MODERATOR))[0] == 200
    for path in (f"/messages/{msg_id}", f"/messages/{made_up}", "/messages/-..%2E%2E-"):
        assert get(site, path)[0] == 401
        assert get(site, path, basic(MODERATOR, "wrong password!"))[0] == 401
        status, body = get(site, path, basic(OTHER))
        assert status == 404
        assert body["error"].startswith("no message ") and "may see" in body["error"]
        assert get(site, path, f"Bearer {SEND_KEY}")[0] == 404
    assert get(site, f"/messages/{msg_id}", "Bearer wrong-key")[0] == 401
    for auth in (None, basic(MODERATOR), f"Bearer {SEND_KEY}"):  # a path never names a file
        assert get(site, "/messages/..%2F..%2Fdata%2Fstate.sqlite3", auth)[0] == 404

    request = urllib.request.Request(
        site.receiver.url + "/api/v1/send",
        data=json.dumps(
            {"to": ["frank@example.com"], "subject": "Your invitation", "text": "Join us."}
        ).encode(),
        headers={"Authorization": f"Bearer {SEND_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        sent_id = json.loads(answer.read())["id"]
    status, queued = get(site, f"/messages/{sent_id}", f"Bearer {SEND_KEY}")
    assert status == 200 and queued["transactional"] is True
    assert [(r["address"], r["status"]) for r in queued["recipients"]] == [
        ("frank@example.com", "queued")
    ]
    assert get(site, f"/messages/{sent_id}", basic(MODERATOR))[0] == 404
    # SES answering before the copy's S line is written: 503, and SNS's retry of the
    # same notification is applied once the line is there.
    early = snskeys.signed(event("Delivery", sent_id, "frank@example.com", "0100-f", "outgoing"))
    status, answer = post_sns(site, early)
    assert status == 503 and "its copy is still being sent; retry later" in answer["error"]
    assert site.cli("run").returncode == 0
    frank_ses = ses_ids(site)["frank@example.com"]
    status, answer = post_sns(site, early)  # applied now, not a replay: frank's copy has SES's id
    assert status == 200 and "was not sent as 0100-f" in answer["timeline"][0]
    sns(site, event("Delivery", sent_id, "frank@example.com", frank_ses, "outgoing"))
    status, done = get(site, f"/messages/{sent_id}", f"Bearer {SEND_KEY}")
    assert [(r["address"], r["status"]) for r in done["recipients"]] == [
        ("frank@example.com", "delivered")
    ]
