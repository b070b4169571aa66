"""What SES reports about a copy goes on the message's own timeline, once, and only there."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest

from routemail import sestags, sidecar
from routemail.config import load
from routemail.feedback import Feedback, ReportTooEarly
from routemail.spool import Spool
from routemail.state import State
from tests.conftest import Project

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
SES_ID = "0100018c2a7f3e1d-5b0e6c4a-1f2d-4e3b-9a8c-7d6e5f4a3b2c-000000"


def queued(spool: Spool, n: int, sent: dict[str, str]) -> str:
    """A post received for volunteers whose copies went to `sent` (recipient: SES id)."""
    raw = f"From: ann@example.com\nSubject: {n}\nMessage-ID: <t{n}@example.com>\n\nhi\n"
    msg_id = spool.receive(raw.encode(), ["volunteers@lists.example.org"], PASSING).id
    lines = [sidecar.event(sidecar.SENT, r, ses) for r, ses in sent.items()]
    spool.append(msg_id, lines)
    return msg_id


def ses(
    kind: str, msg_id: str, recipient: str, ses_id: str = SES_ID, **extra: Any
) -> dict[str, Any]:
    """An SES event-publishing record for the copy with these tags."""
    mail = {
        "timestamp": "2026-11-23T19:52:13.000Z",
        "messageId": ses_id,
        "destination": [recipient],
        "tags": {"list": ["volunteers"], "message": [sestags.encode(msg_id)]},
    }
    bodies = {
        "Delivery": (
            "delivery",
            {
                "timestamp": "2026-11-23T19:52:15.120Z",
                "recipients": [recipient],
                "smtpResponse": "250 2.6.0 Message received",
            },
        ),
        "Bounce": (
            "bounce",
            {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "feedbackId": "fb-bounce-1",
                "timestamp": "2026-11-23T19:52:16Z",
                "bouncedRecipients": [
                    {"emailAddress": recipient, "diagnosticCode": "smtp; 550 5.1.1 unknown"}
                ],
            },
        ),
        "Complaint": (
            "complaint",
            {
                "feedbackId": "fb-complaint-1",
                "complaintFeedbackType": "abuse",
                "complainedRecipients": [{"emailAddress": recipient}],
            },
        ),
        "DeliveryDelay": (
            "deliveryDelay",
            {
                "delayType": "MailboxFull",
                "timestamp": "2026-11-23T20:00:00Z",
                "delayedRecipients": [
                    {"emailAddress": recipient, "diagnosticCode": "452 4.2.2 full"}
                ],
            },
        ),
        "Reject": ("reject", {"reason": "Bad content"}),
    }
    name, body = bodies[kind]
    body = copy.deepcopy(body) | extra
    return {"eventType": kind, "mail": mail, name: body}


@pytest.fixture
def feedback(project: Project) -> Iterator[Feedback]:
    """Feedback for the project, as /ses-events applies it."""
    state = State.open(project.data_dir)
    yield Feedback(load(project.config_path), project.spool, state)
    state.close()


def lines(spool: Spool, msg_id: str) -> list[str]:
    return spool.read_sidecar(msg_id).splitlines()


def reports(spool: Spool, msg_id: str) -> list[sidecar.Event]:
    return [e for e in spool.history(msg_id).events if e.code in sidecar.REPORTS]


def test_each_kind_of_report_lands_on_its_own_copy(feedback: Feedback) -> None:
    """Delivery, Bounce, Complaint, DeliveryDelay and Reject each add one line naming the
    recipient, the report and what it said, at the event's own time."""
    spool = feedback.spool
    msg_id = queued(spool, 1, {"bob@example.net": SES_ID})
    for kind in ("Delivery", "DeliveryDelay", "Bounce", "Complaint", "Reject"):
        feedback.ses_event(ses(kind, msg_id, "bob@example.net"), "sns:n1")
    got = [
        (e.code, e.fields[0], e.fields[1], " ".join(e.fields[2:])) for e in reports(spool, msg_id)
    ]
    assert got == [
        ("Y", "bob@example.net", f"ses:{SES_ID}", "250 2.6.0 Message received"),
        (
            "Q",
            "bob@example.net",
            f"ses:{SES_ID}@2026-11-23T20:00:00Z",
            "MailboxFull: 452 4.2.2 full",
        ),
        ("B", "bob@example.net", "ses:fb-bounce-1", "Permanent/General: smtp; 550 5.1.1 unknown"),
        ("C", "bob@example.net", "ses:fb-complaint-1", "abuse"),
        ("U", "bob@example.net", f"ses:{SES_ID}", "Bad content"),
    ]
    delivered = reports(spool, msg_id)[0]
    assert sidecar.format_time(delivered.time) == "2026-11-23T19:52:15Z"


def test_the_same_report_twice_is_recorded_once(feedback: Feedback) -> None:
    """SNS may deliver an event twice, or once per subscription: one line each."""
    spool = feedback.spool
    msg_id = queued(spool, 2, {"bob@example.net": SES_ID})
    for source in ("sns:first", "sns:second", "sns:first"):
        feedback.ses_event(ses("Delivery", msg_id, "bob@example.net"), source)
        feedback.ses_event(ses("Bounce", msg_id, "bob@example.net"), source)
    assert [e.code for e in reports(spool, msg_id)] == ["Y", "B"]
    applied = feedback.ses_event(ses("Delivery", msg_id, "bob@example.net"), "sns:third")
    assert applied.actions == []
    assert applied.timeline == [
        f"bob@example.net: delivered on the timeline of {msg_id} (recorded before)"
    ]


def test_a_tag_naming_another_message_writes_nothing_there(feedback: Feedback) -> None:
    """A copy is identified by SES's MessageId on its S line, not by the tag alone: a tag
    naming another message (that also went to bob) changes nothing on it."""
    spool = feedback.spool
    victim = queued(spool, 3, {"bob@example.net": "0100-victim-copy"})
    before = lines(spool, victim)
    applied = feedback.ses_event(ses("Bounce", victim, "bob@example.net"), "sns:x")
    assert lines(spool, victim) == before
    assert "not on a timeline (the copy to bob@example.net was not sent as" in applied.timeline[0]


@pytest.mark.parametrize(
    "forged",
    ["../../etc/passwd", "QUEUE/../x", "/tmp/x", "..", "", "a" * 23, "a" * 21, "x" * 5000],
)
def test_an_id_that_is_no_queue_id_touches_no_file(
    feedback: Feedback, project: Project, forged: str
) -> None:
    """Tag values with '/', '..', the wrong length or a megabyte of text name no entry:
    nothing is created or written anywhere, and the bounce itself still counts."""
    before = sorted(p for p in project.root.rglob("*") if "webhooks" not in p.parts)
    sizes = {p: p.stat().st_size for p in before if p.is_file() and "sqlite3" not in p.name}
    event = ses("Bounce", "placeholder", "bob@example.net")
    event["mail"]["tags"]["message"] = [sestags.encode(forged) if forged else ""]
    applied = feedback.ses_event(event, "sns:y")
    after = sorted(p for p in project.root.rglob("*") if "webhooks" not in p.parts)
    assert [p for p in after if p not in before and "sqlite3" not in p.name] == []
    assert {p: p.stat().st_size for p in sizes} == sizes
    assert "bob@example.net: bounce not on a timeline" in applied.timeline[0]
    assert applied.actions == ["bob@example.net: suppressed for all lists"]


def test_a_removed_message_or_an_unsent_copy_is_answered_quietly(feedback: Feedback) -> None:
    """A report for an entry retention removed makes no new entry; one for a recipient the
    message was never sent to adds nothing."""
    spool = feedback.spool
    gone = queued(spool, 4, {"bob@example.net": SES_ID})
    spool.remove(gone)
    applied = feedback.ses_event(ses("Delivery", gone, "bob@example.net"), "sns:z")
    assert not spool.sidecar_path(gone).exists() and not spool.message_path(gone).exists()
    assert f"no queue entry {gone}" in applied.timeline[0]
    kept = queued(spool, 5, {"ann@example.com": SES_ID})
    spool.set_pending(kept, False)  # routed: carol's copy will never be sent
    before = lines(spool, kept)
    applied = feedback.ses_event(ses("Delivery", kept, "carol@example.com"), "sns:z2")
    assert lines(spool, kept) == before
    assert "no copy to carol@example.com was sent" in applied.timeline[0]


def test_oversized_and_multiline_fields_make_one_bounded_line(feedback: Feedback) -> None:
    """A megabyte diagnostic with newlines, CRs, NULs and U+2028 in it cannot add a line
    (a forged S line) or grow the sidecar past a bounded size."""
    spool = feedback.spool
    msg_id = queued(spool, 6, {"bob@example.net": SES_ID})
    evil = "550 no\nS 2026-11-23T19:52:13Z evil@example.com\r\x00\u2028" + "x" * 1_000_000
    event = ses("Delivery", msg_id, "bob@example.net", smtpResponse=evil)
    size = spool.sidecar_path(msg_id).stat().st_size
    feedback.ses_event(event, "sns:big")
    added = spool.sidecar_path(msg_id).stat().st_size - size
    assert added < 600
    (line,) = [ln for ln in lines(spool, msg_id) if ln.startswith("Y ")]
    assert "evil@example.com" in line  # as text inside the one line
    assert spool.history(msg_id).sent_to == {"bob@example.net"}


def test_malformed_events_change_nothing(feedback: Feedback) -> None:
    """Tags, recipients and bodies of the wrong JSON types are ignored, never a traceback."""
    spool = feedback.spool
    msg_id = queued(spool, 7, {"bob@example.net": SES_ID})
    before = lines(spool, msg_id)
    for event in [
        {"eventType": "Delivery", "mail": {"messageId": SES_ID, "tags": "x"}},
        {"eventType": "Delivery", "mail": {"messageId": SES_ID, "tags": {"message": [7]}}},
        {"eventType": "Delivery", "mail": {"messageId": [SES_ID]}, "delivery": []},
        ses("Delivery", msg_id, "bob@example.net", recipients="bob@example.net"),
        ses("Delivery", msg_id, "bob@example.net", recipients=[None, 5, {"a": 1}]),
        ses("Delivery", msg_id, "bob@example.net", ses_id=""),
        ses("Bounce", msg_id, "bob@example.net", bouncedRecipients={"emailAddress": 1}),
        {"eventType": "Open", "mail": {"messageId": SES_ID}},
        {"mail": None},
    ]:
        feedback.ses_event(event, "sns:junk")
    assert lines(spool, msg_id) == before


def test_a_done_entry_stays_done(feedback: Feedback) -> None:
    """Recording a report does not make a finished message need processing again."""
    spool = feedback.spool
    msg_id = queued(spool, 8, {"bob@example.net": SES_ID})
    spool.set_pending(msg_id, False)
    feedback.ses_event(ses("Delivery", msg_id, "bob@example.net"), "sns:done")
    assert not spool.is_pending(msg_id)
    assert os.stat(spool.sidecar_path(msg_id)).st_mode & 0o777 == 0o200
    assert [e.code for e in reports(spool, msg_id)] == ["Y"]


def test_a_report_faster_than_its_s_line_is_asked_for_again(feedback: Feedback) -> None:
    """While the message is being routed and the copy's S line is not written yet, a
    Delivery is refused so that SNS delivers it again; a bounce is applied at once (a
    notice's bounce never finds an S line) and goes on no timeline."""
    spool = feedback.spool
    msg_id = queued(spool, 9, {})
    assert spool.is_pending(msg_id)
    with pytest.raises(ReportTooEarly, match=r"bob@example\.net: its copy is still being sent"):
        feedback.ses_event(ses("Delivery", msg_id, "bob@example.net"), "sns:early")
    bounced = feedback.ses_event(ses("Bounce", msg_id, "carol@example.com"), "sns:early2")
    assert bounced.actions == ["carol@example.com: suppressed for all lists"]
    assert bounced.timeline == [
        "carol@example.com: bounce not on a timeline (its copy is still being sent)"
    ]
    assert reports(spool, msg_id) == []
    spool.append(msg_id, [sidecar.event(sidecar.SENT, "bob@example.net", SES_ID)])
    applied = feedback.ses_event(ses("Delivery", msg_id, "bob@example.net"), "sns:again")
    assert applied.timeline == [
        f"bob@example.net: delivered on the timeline of {msg_id} (recorded)"
    ]
    assert [e.code for e in reports(spool, msg_id)] == ["Y"]


def test_lines_before_in_any_script_do_not_hide_the_copy(feedback: Feedback) -> None:
    """UTF-8 addresses whose lower case is longer ('İ' is two characters lowered) on
    earlier lines do not shift where bob's S line is looked for."""
    spool = feedback.spool
    sent = {f"İİİ{n}@exämple.org": f"0100-{n}" for n in range(5)} | {"bob@example.net": SES_ID}
    msg_id = queued(spool, 10, sent)
    applied = feedback.ses_event(ses("Delivery", msg_id, "bob@example.net"), "sns:utf8")
    assert applied.timeline == [
        f"bob@example.net: delivered on the timeline of {msg_id} (recorded)"
    ]
