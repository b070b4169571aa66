"""Held messages and owners' changes through the API, against the real app under gunicorn,
with `routemail run` delivering what was decided into the outbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from routemail import config as configuration
from routemail.run import run
from tests.conftest import BASE_CONFIG, Project, Receiver, running_receiver
from tests.mailbox import outbox, recipients
from tests.test_api import ADMIN, PASSWORD, call, verified_account

COORDINATOR, CHAIR, LEAD = "coordinator@example.org", "chair@example.org", "lead@example.org"
VOLUNTEERS = "volunteers@lists.example.org"
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
ATTACHED = (
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="b"\n\n'
    "--b\nContent-Type: text/html; charset=utf-8\n\n"
    "<p>Can anyone take my <b>Saturday</b> shift?</p><script>alert(1)</script>\n"
    '--b\nContent-Type: application/pdf; name="rota.pdf"\n'
    "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b--\n"
)


@pytest.fixture
def api(project: Project) -> Iterator[Receiver]:
    """gunicorn over the base lists plus a dynamic team-N list whose lead moderates it."""
    script = project.root / "team"
    script.write_text(
        "#!/bin/sh\necho member: one@example.com\necho member: two@example.com\n"
        f"echo moderator: {LEAD}\n"
    )
    script.chmod(0o755)
    project.write_config(
        BASE_CONFIG + f'\n[[dynamic]]\npattern = "team-(?P<n>[0-9]+)"\nresolver = "command"\n'
        f'posters = "members"\ncommand = ["{script}", "{{n}}"]\n'
    )
    with running_receiver(project) as r:
        for who in (COORDINATOR, CHAIR, LEAD, ADMIN):
            verified_account(r.url, project, who)
        yield r


def post(project: Project, subject: str, to: str = VOLUNTEERS, mime: str = "") -> str:
    raw = (
        f"From: Eve <eve@outside.example>\nTo: {to}\nSubject: {subject}\n"
        f"Message-ID: <{subject.replace(' ', '-')}@outside.example>\n{mime or chr(10)}"
        "Can anyone take my Saturday shift?\n"
    ).encode()
    msg_id = project.spool.receive(raw, [to], PASSING).id
    routed(project)
    return msg_id


def routed(project: Project) -> None:
    report = run(configuration.load(project.config_path), project.spool)
    assert report.errors == []


def told(project: Project) -> list[str]:
    return [d.subject for d in outbox(project.data_dir) if d.recipient == "eve@outside.example"]


def as_(who: str) -> tuple[str, str]:
    return (who, PASSWORD)


def log_text(project: Project) -> str:
    return "".join(p.read_text() for p in (project.data_dir / "maillist" / "log").iterdir())


def test_a_moderator_lists_looks_and_decides(api: Receiver, project: Project) -> None:
    """The moderator sees what is held, its text (the HTML as text, nothing active) and
    its attachments; approving delivers it to every member once, rejecting tells the
    author the reason, discarding tells nobody; a second decision answers 409."""
    first = post(project, "Shift swap", mime=ATTACHED)
    second, third = post(project, "Off topic"), post(project, "Spam")
    base = "/lists/volunteers/held"
    assert call(api.url, "GET", base).status == 401
    assert call(api.url, "GET", base, auth=as_(CHAIR)).status == 403
    listed = call(api.url, "GET", base, auth=as_(COORDINATOR))
    assert listed.status == 200, listed.body
    assert [(h["id"], h["from"], h["subject"]) for h in listed.body["held"]] == [
        (first, "eve@outside.example", "Shift swap"),
        (second, "eve@outside.example", "Off topic"),
        (third, "eve@outside.example", "Spam"),
    ]
    assert listed.body["held"][0]["reason"] == (
        "sender eve@outside.example is not a member of volunteers"
    )

    shown = call(api.url, "GET", f"{base}/{first}", auth=as_(COORDINATOR))
    assert shown.status == 200, shown.body
    assert "Can anyone take my Saturday shift?" in shown.body["text"]
    assert "<" not in shown.body["text"] and "alert" not in shown.body["text"]
    assert shown.body["attachments"] == [{"name": "rota.pdf", "type": "application/pdf", "size": 9}]
    assert shown.body["headers"]["subject"] == "Shift swap"
    assert shown.body["expires"] > shown.body["received"]

    approved = call(api.url, "POST", f"{base}/{first}", {"action": "approve"}, as_(COORDINATOR))
    assert approved.status == 200, approved.body
    assert approved.body | {"at": ""} == {
        "id": first,
        "list": "volunteers",
        "state": "approved",
        "by": COORDINATOR,
        "how": "api",
        "at": "",
        "reason": None,
    }
    again = call(api.url, "POST", f"{base}/{first}", {"action": "reject"}, as_(COORDINATOR))
    assert again.status == 409
    assert again.body["decision"] == approved.body
    assert COORDINATOR in again.body["error"] and "approved" in again.body["error"]
    assert call(api.url, "GET", f"{base}/{first}", auth=as_(COORDINATOR)).status == 409
    routed(project)
    assert recipients(project.data_dir, "Shift swap") == {
        "ann@example.com": 1,
        "bob@example.net": 1,
        COORDINATOR: 1,
    }

    why = {"action": "reject", "reason": "Off topic here; try the swap board."}
    assert call(api.url, "POST", f"{base}/{second}", why, as_(COORDINATOR)).status == 200
    assert (
        call(api.url, "POST", f"{base}/{third}", {"action": "discard"}, as_(COORDINATOR)).status
        == 200
    )
    routed(project)
    assert sorted(told(project)) == [
        "Your message was held: Off topic",
        "Your message was held: Shift swap",
        "Your message was held: Spam",
        "Your message was rejected: Off topic",
    ]
    [notice] = [d.message for d in outbox(project.data_dir) if "rejected" in d.subject]
    body = notice.get_body(("plain",))
    assert body is not None and "Off topic here; try the swap board." in body.get_content()
    assert recipients(project.data_dir, "Off topic") == recipients(project.data_dir, "Spam") == {}
    assert call(api.url, "GET", base, auth=as_(COORDINATOR)).body == {"held": []}
    log = log_text(project)
    assert f"{first} volunteers: approved by {COORDINATOR} (api)" in log
    assert f"{second} volunteers: rejected by {COORDINATOR} (api): Off topic here" in log
    assert f"{third} volunteers: discarded by {COORDINATOR} (api)" in log


def test_hostile_requests_get_clear_answers(api: Receiver, project: Project) -> None:
    held = post(project, "Shift swap")
    on_board = post(project, "Board matter", to="board@lists.example.org")
    base = "/lists/volunteers/held"
    who = as_(COORDINATOR)
    for bad in (
        "..",
        "-",
        "a%2Fb",
        "%2e%2e",
        "..%2F..%2Fsecret.key",
        held[:21],
        held + "x",
        "A" * 22,
    ):
        answer = call(api.url, "POST", f"{base}/{bad}", {"action": "approve"}, who)
        assert answer.status == 404, (bad, answer.body)
        assert call(api.url, "GET", f"{base}/{bad}", auth=who).status == 404, bad
    # Another list's message is not held here, even for its own moderator.
    assert call(api.url, "GET", f"{base}/{on_board}", auth=who).status == 404
    assert (
        call(api.url, "POST", f"{base}/{on_board}", {"action": "approve"}, as_(CHAIR)).status == 403
    )
    assert call(api.url, "GET", "/lists/nosuch/held", auth=who).status == 404
    assert call(api.url, "GET", "/lists/..%2Fx/held", auth=who).status in (400, 404)
    for data, error in (
        ([], "JSON object"),
        ({"action": "delete"}, "action"),
        ({"action": "approve", "reason": "x"}, "only a rejection"),
        ({"action": "reject", "reason": 7}, "reason"),
        ({"action": "reject", "reason": "x" * 1001}, "longer than 1000"),
    ):
        answer = call(api.url, "POST", f"{base}/{held}", data, who)
        assert answer.status == 400 and error in answer.body["error"], (data, answer.body)
    raw = call(api.url, "POST", f"{base}/{held}", raw=b'{"action": ', auth=who)
    assert raw.status == 400
    huge = call(
        api.url, "POST", f"{base}/{held}", {"action": "reject", "reason": "x" * 300_000}, who
    )
    assert huge.status == 413
    assert project.spool.history(held).held_lists == {"volunteers"}


def test_a_dynamic_lists_moderator_decides_on_it(api: Receiver, project: Project) -> None:
    held = post(project, "Team news", to="team-7@lists.example.org")
    base = "/lists/team-7/held"
    assert call(api.url, "GET", base, auth=as_(COORDINATOR)).status == 403
    listed = call(api.url, "GET", base, auth=as_(LEAD))
    assert [h["id"] for h in listed.body["held"]] == [held]
    decided = call(api.url, "POST", f"{base}/{held}", {"action": "approve"}, as_(LEAD))
    assert decided.status == 200, decided.body
    routed(project)
    assert recipients(project.data_dir, "Team news") == {"one@example.com": 1, "two@example.com": 1}


def test_the_administrator_adds_members_and_changes_settings(
    api: Receiver, project: Project
) -> None:
    """Members added get a welcome (or, invited, a link to confirm); settings change in
    lists.toml; each change is a log line naming the administrator and the API; nobody
    else may."""
    created = call(
        api.url, "POST", "/lists", {"name": "club", "description": "Our club"}, as_(ADMIN)
    )
    assert created.status == 201, created.body
    added = call(
        api.url,
        "POST",
        "/lists/club/members",
        {"addresses": ["zoe@example.net", ADMIN]},
        as_(ADMIN),
    )
    assert added.status == 200, added.body
    assert added.body == {
        "list": "club",
        "members": {"zoe@example.net": "added", ADMIN: "already a member"},
    }
    invited = call(
        api.url,
        "POST",
        "/lists/club/members",
        {"addresses": ["yan@example.net"], "invite": True},
        as_(ADMIN),
    )
    assert invited.body["members"] == {"yan@example.net": "invited"}
    assert (
        call(
            api.url, "POST", "/lists/club/members", {"addresses": ["x@example.net"]}, as_(CHAIR)
        ).status
        == 403
    )
    for bad in (
        {"addresses": "zoe@example.net"},
        {"addresses": ["not an address"]},
        {"addresses": []},
        {"addresses": ["a@b.c"], "invite": "yes"},
    ):
        assert call(api.url, "POST", "/lists/club/members", bad, as_(ADMIN)).status == 400, bad
    routed(project)
    subjects = {d.recipient: d.subject for d in outbox(project.data_dir) if "club" in d.subject}
    assert subjects == {
        "zoe@example.net": "Welcome to club",
        "yan@example.net": "Invitation to club",
    }

    changed = call(
        api.url,
        "PATCH",
        "/lists/club",
        {
            "footer": "Leave: {unsubscribe_url}",
            "posters": "anyone",
            "subject_prefix": "[club]",
            "moderators": [ADMIN, CHAIR],
        },
        as_(ADMIN),
    )
    assert changed.status == 200, changed.body
    assert (changed.body["footer"], changed.body["posters"], changed.body["moderators"]) == (
        "Leave: {unsubscribe_url}",
        "anyone",
        [ADMIN, CHAIR],
    )
    club = configuration.load(project.config_path).lists["club"]
    assert (club.subject_prefix, club.moderators) == ("[club]", (ADMIN, CHAIR))
    for bad, status in (
        ({}, 400),
        ({"posters": "everyone"}, 400),
        ({"footer": "{nonsense}"}, 400),
        ({"description": "a\nb"}, 400),
        ({"moderators": [CHAIR]}, 400),  # the administrator stays a moderator
        ({"members": ["x@example.net"]}, 400),
    ):
        answer = call(api.url, "PATCH", "/lists/club", bad, as_(ADMIN))
        assert answer.status == status, (bad, answer.body)
    assert call(api.url, "PATCH", "/lists/club", {"footer": ""}, as_(CHAIR)).status == 403
    assert call(api.url, "PATCH", "/lists/nosuch", {"footer": ""}, as_(ADMIN)).status == 404
    assert (
        call(api.url, "DELETE", "/lists/club/members/zoe@example.net", auth=as_(ADMIN)).status
        == 200
    )
    log = log_text(project)
    for line in (
        f"club: removed member zoe@example.net by {ADMIN} (api)",
        f"club: created the list, administered by {ADMIN} by {ADMIN} (api)",
        f"club: added member zoe@example.net by {ADMIN} (api)",
        f"club: invited yan@example.net by {ADMIN} (api)",
        f"club: set posters = 'anyone' by {ADMIN} (api)",
        f"club: set moderators = {ADMIN}, {CHAIR} by {ADMIN} (api)",
    ):
        assert line in log
