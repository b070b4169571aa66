"""Held messages (routemail.held): listing them and deciding, on a real spool and outbox,
with `routemail run` delivering and telling authors."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path

import pytest

from routemail import config as configuration
from routemail import held, sidecar
from routemail.run import run
from tests.conftest import Project
from tests.mailbox import outbox, recipients

VOLUNTEERS = "volunteers@lists.example.org"
PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


def post(
    project: Project, sender: str = "eve@outside.example", msgid: str = "<p-1@x>", **verdicts: str
) -> str:
    raw = (
        f"From: Eve <{sender}>\nTo: {VOLUNTEERS}\nSubject: Shift swap\nMessage-ID: {msgid}\n\n"
        "Can anyone take my Saturday shift?\n"
    ).encode()
    return project.spool.receive(raw, [VOLUNTEERS], PASSING | verdicts).id


def routed(project: Project) -> configuration.Config:
    config = configuration.load(project.config_path)
    report = run(config, project.spool)
    assert report.errors == []
    return config


def told(project: Project, to: str = "eve@outside.example") -> list[str]:
    """The subjects of the notices an author received."""
    return [d.subject for d in outbox(project.data_dir) if d.recipient == to]


def log_text(project: Project) -> str:
    return "".join(p.read_text() for p in (project.data_dir / "maillist" / "log").iterdir())


def test_a_held_message_is_listed_with_why_and_until_when(project: Project) -> None:
    """A non-member's post is listed on its list only, with the author, subject, reason,
    when it came and when the hold expires; the author is told once that it waits."""
    msg_id = post(project)
    config = routed(project)
    [found] = held.held_on(config, project.spool, "volunteers")
    assert found.as_json() | {"received": "", "expires": ""} == {
        "id": msg_id,
        "from": "eve@outside.example",
        "subject": "Shift swap",
        "received": "",
        "reason": "sender eve@outside.example is not a member of volunteers",
        "expires": "",
    }
    # Fourteen days after the sidecar's last line (retention's clock), not the receipt.
    last = project.spool.history(msg_id).last_activity
    assert last is not None and found.expires == last + dt.timedelta(days=14)
    assert held.held_on(config, project.spool, "board") == []
    assert held.held_on(config, project.spool) == [found]
    assert told(project) == ["Your message was held: Shift swap"]
    routed(project)  # nothing new: no second notice
    assert told(project) == ["Your message was held: Shift swap"]


def test_approval_delivers_once_and_a_second_decision_learns_the_first(project: Project) -> None:
    """Approving through the API delivers to every member exactly as a reply would (A
    line, then S and L); a second decision, any kind, is refused with what was decided,
    by whom, how and when."""
    msg_id = post(project)
    config = routed(project)
    decision = held.decide(
        config, project.spool, msg_id, "volunteers", held.APPROVE, "coordinator@example.org", "api"
    )
    assert (decision.state, decision.by, decision.how) == (
        "approved",
        "coordinator@example.org",
        "api",
    )
    routed(project)
    assert set(recipients(project.data_dir, "Shift swap").values()) == {1}
    assert len(recipients(project.data_dir, "Shift swap")) == 3
    [line] = [e for e in project.spool.history(msg_id).events if e.code == sidecar.APPROVED]
    assert line.fields == ("volunteers", "coordinator@example.org", "api")
    assert f"{msg_id} volunteers: approved by coordinator@example.org (api)" in log_text(project)
    for action in (held.APPROVE, held.REJECT, held.DISCARD):
        with pytest.raises(held.AlreadyDecided) as info:
            held.decide(
                config, project.spool, msg_id, "volunteers", action, "ann@example.com", "web"
            )
        assert info.value.decision == decision
    routed(project)
    assert len(recipients(project.data_dir, "Shift swap")) == 3


def test_rejection_tells_the_author_the_reason(project: Project) -> None:
    msg_id = post(project)
    config = routed(project)
    held.decide(
        config,
        project.spool,
        msg_id,
        "volunteers",
        held.REJECT,
        "coordinator@example.org",
        "shell",
        "Off topic:\nplease use the swap board",
    )
    routed(project)
    routed(project)
    assert recipients(project.data_dir) == {}
    assert told(project) == [
        "Your message was held: Shift swap",
        "Your message was rejected: Shift swap",
    ]
    [notice] = [d.message for d in outbox(project.data_dir) if "rejected" in d.subject]
    body = notice.get_body(("plain",))
    assert body is not None
    assert "Off topic: please use the swap board" in body.get_content()
    assert "coordinator" not in body.get_content()  # the moderator is not named
    [line] = [e for e in project.spool.history(msg_id).events if e.code == sidecar.REJECTED]
    assert line.fields[:3] == ("volunteers", "coordinator@example.org", "shell")


def test_discard_drops_silently(project: Project) -> None:
    msg_id = post(project)
    config = routed(project)
    held.decide(
        config, project.spool, msg_id, "volunteers", held.DISCARD, "coordinator@example.org", "web"
    )
    routed(project)
    assert recipients(project.data_dir) == {}
    assert told(project) == ["Your message was held: Shift swap"]
    assert held.held_on(config, project.spool) == []
    assert sidecar.summary_state(project.spool.history(msg_id), False) == "done"


def test_no_notice_to_the_author_of_failing_mail(project: Project) -> None:
    """A post failing the spam (or any) verdict is held, but its From may be forged: no
    notice goes there."""
    post(project, spam="FAIL")
    routed(project)
    assert told(project) == []


@pytest.mark.parametrize(
    "bad",
    [
        "../../secret.key",
        "a/b",
        "..",
        "-",
        "",
        "x" * 23,
        "pd3RcZn7Ax-dRjbnzHsKt",
        "pd3RcZn7Ax-dRjbnzHsK/g",
    ],
)
def test_ids_that_are_no_queue_ids_are_refused(project: Project, bad: str) -> None:
    config = configuration.load(project.config_path)
    with pytest.raises(held.NotHeld):
        held.decide(config, project.spool, bad, "volunteers", held.APPROVE, "x@example.org", "api")
    with pytest.raises(held.NotHeld):
        held.find(config, project.spool, bad, "volunteers")


def test_unknown_id_and_another_lists_message_are_not_held_there(project: Project) -> None:
    msg_id = post(project)
    config = routed(project)
    with pytest.raises(held.NotHeld, match="is held for board"):
        held.decide(
            config, project.spool, msg_id, "board", held.APPROVE, "chair@example.org", "api"
        )
    with pytest.raises(held.NotHeld):
        held.decide(
            config, project.spool, "A" * 22, "volunteers", held.APPROVE, "x@example.org", "api"
        )
    assert not project.spool.sidecar_path("A" * 22).exists()  # no entry made by asking
    with pytest.raises(held.RoutemailError, match="reason"):
        held.decide(
            config, project.spool, msg_id, "volunteers", held.REJECT, "c@x.org", "api", "x" * 1001
        )
    assert held.find(config, project.spool, msg_id, "volunteers").id == msg_id


def _decide(args: tuple[Path, str, str]) -> str:
    config_path, msg_id, who = args
    config = configuration.load(config_path)
    spool = Project(config_path.parent).spool
    try:
        return held.decide(config, spool, msg_id, "volunteers", held.APPROVE, who, "api").by
    except held.AlreadyDecided as exc:
        return "late: " + exc.decision.by


def test_concurrent_decisions_have_one_winner(project: Project) -> None:
    """Eight moderators deciding at once: one A line, and each other learns who won."""
    msg_id = post(project)
    routed(project)
    who = [f"m{i}@example.org" for i in range(8)]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        answers = pool.map(_decide, [(project.config_path, msg_id, w) for w in who])
    winners = [a for a in answers if not a.startswith("late: ")]
    assert len(winners) == 1
    assert set(answers) == {winners[0], "late: " + winners[0]}
    assert [e.code for e in project.spool.history(msg_id).events].count(sidecar.APPROVED) == 1


def test_lines_written_before_the_how_field_still_read(project: Project) -> None:
    """A and J lines from earlier versions (no how field) read as the shell's or mail's."""
    history = sidecar.History.of(
        sidecar.parse(
            "M 2026-11-22T22:33:57Z volunteers\n"
            "A 2026-11-22T22:40:00Z volunteers coordinator@example.org\n"
            "M 2026-11-22T22:33:57Z board\n"
            "J 2026-11-22T22:41:00Z board shell:root\n"
        )
    )
    approved = held.decision_of(history, "x", "volunteers")
    rejected = held.decision_of(history, "x", "board")
    assert approved is not None and rejected is not None
    assert (approved.state, approved.by, approved.how) == (
        "approved",
        "coordinator@example.org",
        "mail",
    )
    assert (rejected.state, rejected.by, rejected.how, rejected.reason) == (
        "rejected",
        "shell:root",
        "shell",
        "",
    )
    assert history.hold_reason("volunteers") == ""


def test_an_author_not_told_before_a_crash_is_told_once_on_resume(project: Project) -> None:
    """A run stopped after the moderation request (M) but before the author's notice (T)
    leaves the entry pending; the next run tells the author, once."""
    msg_id = post(project)
    project.spool.append(msg_id, [sidecar.event(sidecar.MODERATION, "volunteers", "why")])
    project.spool.set_pending(msg_id, True)
    routed(project)
    routed(project)
    assert told(project) == ["Your message was held: Shift swap"]
    assert [e.code for e in project.spool.history(msg_id).events].count(sidecar.TOLD) == 1
