"""Priority mail: transactional mail and notices are not held up by a list's fan-out."""

from __future__ import annotations

import subprocess
import sys
import time

from routemail import config as configuration
from routemail import outgoing
from tests.conftest import BASE_CONFIG, Project
from tests.mailbox import outbox

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
MEMBERS = [f"member{n:03d}@example.com" for n in range(400)]


def test_transactional_mail_and_a_moderation_request_overtake_a_fan_out(
    project: Project,
) -> None:
    """A password reset and a post needing moderation, queued while a 400-member fan-out
    is being sent at 100 a second, go out before the fan-out ends; every member still
    gets one copy, and the held post stays held."""
    listed = ", ".join(f'"{m}"' for m in MEMBERS)
    project.write_config(
        BASE_CONFIG
        + f'\n[lists.everyone]\nposters = "anyone"\nmembers = [{listed}]\n'
        + "\n[delivery]\nrate = 100\n"
    )
    fan_out = project.spool.receive(
        b"From: Ann <ann@example.com>\nTo: everyone@lists.example.org\nSubject: Fan-out\n"
        b"Message-ID: <fan-out@example.com>\n\nTo all of you.\n",
        ["everyone@lists.example.org"],
        PASSING,
    ).id
    run = subprocess.Popen(
        [sys.executable, "-m", "routemail", "run", "--quiet"],
        env=project.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while len(outbox(project.data_dir)) < 20:
            assert run.poll() is None, "the fan-out ended before anything could overtake it"
            time.sleep(0.02)
        reset, _ = outgoing.queue(
            configuration.load(project.config_path),
            project.spool,
            b"From: Lists <no-reply@lists.example.org>\nTo: bob@example.net\n"
            b"Subject: Your password reset\n\nFollow the link.\n",
        )
        held = project.spool.receive(
            b"From: Stranger <stranger@example.com>\nTo: volunteers@lists.example.org\n"
            b"Subject: Let me in\nMessage-ID: <stranger@example.com>\n\nHello.\n",
            ["volunteers@lists.example.org"],
            PASSING,
        ).id
        assert run.wait(timeout=120) == 0
    finally:
        if run.poll() is None:
            run.kill()
        assert run.stderr is not None
        run.stderr.close()

    delivered = outbox(project.data_dir)  # in the order written
    subjects = [d.subject for d in delivered]
    fan_out_copies = [i for i, s in enumerate(subjects) if s == "Fan-out"]
    assert sorted(delivered[i].recipient for i in fan_out_copies) == MEMBERS
    last_copy = fan_out_copies[-1]
    assert subjects.index("Your password reset") < last_copy
    request = next(i for i, s in enumerate(subjects) if s.startswith("Moderation needed"))
    assert request < last_copy
    assert not project.spool.is_pending(reset.id)
    assert not project.spool.is_pending(fan_out)
    assert project.spool.history(held).has("M", "volunteers")
