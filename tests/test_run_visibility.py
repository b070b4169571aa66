"""A run's failures are visible: sidecar lines, the summary, exit status, --quiet, run.log."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import BASE_CONFIG, Project, free_port, running_receiver
from tests.mailbox import moderation_requests
from tests.test_receiver import MESSAGE, post

SMTP_NEEDS_A_PASSWORD = """
[delivery]
transport = "smtp"

[delivery.smtp]
host = "127.0.0.1"
port = 2
tls = "none"
username = "relay-user"
password_env = "ROUTEMAIL_TEST_UNSET_PASSWORD"
"""


def test_the_run_the_receiver_starts_writes_its_problems_to_data_run_log(
    project: Project,
) -> None:
    """on_receipt = "run": the run's output goes to data/run.log, not to /dev/null."""
    project.write_config(
        BASE_CONFIG.replace('on_receipt = "none"', 'on_receipt = "run"') + SMTP_NEEDS_A_PASSWORD
    )
    with running_receiver(project) as r:
        status, answer = post(r, MESSAGE)
        assert status == 200
        run_log = project.data_dir / "run.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if run_log.exists() and "ROUTEMAIL_TEST_UNSET_PASSWORD" in run_log.read_text():
                break
            time.sleep(0.2)
        text = run_log.read_text()
    assert "ROUTEMAIL_TEST_UNSET_PASSWORD" in text
    assert str(answer["id"]) in text
    assert project.spool.is_pending(str(answer["id"]))


# -- routemail run against transports that fail --------------------------------------------

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
MEMBERS = ["ann@example.com", "bob@example.net", "coordinator@example.org"]


def fast_retries(transport: str) -> str:
    return f"""
[delivery]
transport = "{transport}"
rate = 1000
retries = 1
backoff_seconds = 0.01
max_backoff_seconds = 0.05
max_attempts = 2
"""


def smtp_config(port: int) -> str:
    return (
        BASE_CONFIG
        + fast_retries("smtp")
        + f'\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\ntimeout = 5\n'
    )


def queue_post(project: Project, n: int = 1, to: str = "volunteers") -> str:
    raw = (
        f"From: Ann <ann@example.com>\nTo: {to}@lists.example.org\nSubject: Post {n}\n"
        f"Message-ID: <visible-{n}@example.com>\n\nHello.\n"
    ).encode()
    return project.spool.receive(raw, [f"{to}@lists.example.org"], PASSING).id


def routemail(
    project: Project, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "routemail", *args],
        env=env or project.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def failed_lines(project: Project, msg_id: str) -> list[str]:
    return [ln for ln in project.spool.read_sidecar(msg_id).splitlines() if ln.startswith("F ")]


def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_smtp_server_down_gives_every_copy_an_f_line_and_exit_status_3(
    project: Project,
) -> None:
    """With the relay down before the first copy, each member gets an F line naming the
    failure, the summary counts them deferred, and the run exits 3; a second run adds
    no second line per recipient while the server stays down."""
    project.write_config(smtp_config(closed_port()))
    msg_id = queue_post(project)

    done = routemail(project, "run", "--json")
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["total"]["deferred"] == 3
    assert report["total"]["sent"] == 0
    assert report["messages"][msg_id]["deferred"] == 3
    assert report["lists"]["volunteers"]["deferred"] == 3
    assert report["errors"] == []
    assert report["exit_status"] == 3
    lines = failed_lines(project, msg_id)
    assert sorted(ln.split()[2] for ln in lines) == MEMBERS
    assert all("transport down:" in ln and "ConnectionRefusedError" in ln for ln in lines)
    assert project.spool.is_pending(msg_id)

    again = routemail(project, "run", "--quiet")
    assert again.returncode == 3
    assert again.stdout == ""
    problem_lines = again.stderr.splitlines()
    assert len(problem_lines) == 1, again.stderr
    assert problem_lines[0].startswith(f"undelivered: {msg_id}: volunteers: deferred: smtp: ")
    assert problem_lines[0].endswith("(3 copies)")
    assert len(failed_lines(project, msg_id)) == 3
    assert project.spool.is_pending(msg_id)


class Refusing:
    """An SMTP handler: busy* gets 451, nobody* 550, anyone else is accepted."""

    def __init__(self) -> None:
        self.accepted: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        local = address.split("@")[0]
        if local.startswith("busy"):
            return "451 4.2.1 Mailbox busy, try again later"
        if local.startswith("nobody"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def refusing_smtp() -> Iterator[tuple[int, Refusing]]:
    handler = Refusing()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()


def test_refusals_are_counted_per_message_and_list_and_quiet_prints_each_problem(
    project: Project, refusing_smtp: tuple[int, Refusing]
) -> None:
    """A 4xx is deferred (F), a 5xx given up (G), a suppressed address skipped (K); the
    text summary and --json count each, per message and in total; exit status 3."""
    port, handler = refusing_smtp
    members = '"ann@example.com", "busy@example.com", "nobody@example.com", "gone@example.com"'
    project.write_config(
        smtp_config(port) + f'\n[lists.helpers]\nposters = "anyone"\nmembers = [{members}]\n'
    )
    assert routemail(project, "suppression", "add", "gone@example.com").returncode == 0
    first = queue_post(project, 1, "helpers")
    second = queue_post(project, 2, "helpers")

    done = routemail(project, "run")
    assert done.returncode == 3, done.stderr
    assert "processed 2 entries in 1 scan: copies: 2 sent, 2 deferred, 2 given up, " in done.stdout
    assert f"  {first}: copies: 1 sent, 1 deferred, 1 given up, 1 suppressed" in done.stdout
    assert f"  {second}: copies: 1 sent, 1 deferred, 1 given up, 1 suppressed" in done.stdout
    problems = done.stderr.splitlines()
    assert len(problems) == 4, done.stderr
    # Copies go out in parallel: their outcomes come back in any order.
    assert any(
        f"undelivered: {first}: helpers: deferred: smtp: RCPT TO refused: 451" in p
        for p in problems
    )
    assert any(f"{second}: helpers: given up: smtp: RCPT TO refused: 550" in p for p in problems)
    assert handler.accepted == ["ann@example.com", "ann@example.com"]
    codes = {
        ln.split()[0] + " " + ln.split()[2]
        for ln in project.spool.read_sidecar(first).splitlines()
        if ln[0] in "SFGK"
    }
    assert codes == {
        "S ann@example.com",
        "F busy@example.com",
        "G nobody@example.com",
        "K gone@example.com",
    }


def test_transport_that_cannot_be_opened_is_an_error_and_copies_still_get_f_lines(
    project: Project,
) -> None:
    """A password missing from the environment: exit 1, one line naming the variable,
    and each copy an F line saying why it was not sent."""
    project.write_config(BASE_CONFIG + SMTP_NEEDS_A_PASSWORD)
    msg_id = queue_post(project)
    done = routemail(project, "run", "--quiet")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: transport: delivery.smtp: the password for relay-user")
    assert "ROUTEMAIL_TEST_UNSET_PASSWORD" in lines[0]
    assert lines[1].startswith(f"undelivered: {msg_id}: volunteers: deferred: transport not usable")
    failed = failed_lines(project, msg_id)
    assert sorted(ln.split()[2] for ln in failed) == MEMBERS
    assert all("ROUTEMAIL_TEST_UNSET_PASSWORD" in ln for ln in failed)


def test_ses_without_credentials_defers_every_copy(project: Project, moto_server: str) -> None:
    """SES (moto as a server) with no credentials anywhere: F lines, exit 3, and the
    problem line says where credentials are looked for."""
    project.write_config(
        BASE_CONFIG + fast_retries("ses") + f'\n[delivery.ses]\nendpoint_url = "{moto_server}"\n'
    )
    msg_id = queue_post(project)
    env = {k: v for k, v in project.env().items() if not k.startswith("AWS_") or k == "AWS_REGION"}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(project.root / "no-credentials"),
        AWS_CONFIG_FILE=str(project.root / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    done = routemail(project, "run", "--quiet", env=env)
    assert done.returncode == 3, done.stderr
    assert "Unable to locate credentials" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    failed = failed_lines(project, msg_id)
    assert sorted(ln.split()[2] for ln in failed) == MEMBERS


def test_a_run_where_everything_went_out_exits_0_and_quiet_says_nothing(
    project: Project,
) -> None:
    """Outbox delivery, a held post (its author told), an unknown destination
    forwarded and a loop discarded: counted as such, exit 0, --quiet silent."""
    queue_post(project, 1)
    held = queue_post(project, 2, "board")  # Ann may not post to board: held
    unknown = queue_post(project, 3, "nosuchlist")
    loop = project.spool.receive(
        b"From: x@example.com\nTo: volunteers@lists.example.org\nSubject: again\n"
        b"List-Id: <volunteers.lists.example.org>\nMessage-ID: <loop@example.com>\n\nx\n",
        ["volunteers@lists.example.org"],
        PASSING,
    ).id
    done = routemail(project, "run", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total"] == {
        "sent": 4,  # three members, and Ann's notice that her board post is held
        "deferred": 0,
        "gave_up": 0,
        "suppressed": 0,
        "held": 1,
        "forwarded": 1,
        "discarded": 1,
    }
    assert report["messages"][held]["held"] == 1
    assert report["messages"][unknown]["forwarded"] == 1
    assert report["messages"][loop]["discarded"] == 1
    assert report["problems"] == []
    queue_post(project, 4)
    quiet = routemail(project, "run", "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_progress_on_a_terminal(project: Project) -> None:
    """On a terminal, the run shows copies done of the total, the rate and an ETA."""
    queue_post(project)
    main, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "routemail", "run"],
            env=project.env(),
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=120,
        )
    finally:
        os.close(secondary)
    shown = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(main, 4096):
            shown += chunk
    os.close(main)
    assert done.returncode == 0
    assert re.search(rb"message 1/1  copies \d/3  [\d.]+/s  ETA \d\d:\d\d:\d\d", shown), shown


def test_a_refused_approval_notice_that_cannot_be_sent_is_a_g_line(project: Project) -> None:
    """The notice about a refused approval is sent once (the reply is then discarded): if
    the transport is down, the reply's sidecar says so with a G line and the run exits 3."""
    held = queue_post(project, 1, "board")  # Ann may not post to board: held
    assert routemail(project, "run").returncode == 0
    [request] = moderation_requests(project.data_dir)
    address = str(request.message["Reply-To"])
    project.write_config(smtp_config(closed_port()))
    reply = project.spool.receive(
        (
            "From: =?us-ascii?q?chair=40example.org?= <mallory@evil.example>\n"
            f"To: {address}\nSubject: Re: ok\nMessage-ID: <reply-9@example.org>\n\nok\n"
        ).encode(),
        [address],
        PASSING,
    ).id
    done = routemail(project, "run", "--quiet")
    assert done.returncode == 3, done.stderr
    assert f"undelivered: {reply}: board: given up: refused-approval notice not sent" in done.stderr
    gave_up = [ln for ln in project.spool.read_sidecar(reply).splitlines() if ln.startswith("G ")]
    assert len(gave_up) == 1 and gave_up[0].split()[2] == "chair@example.org"
    assert project.spool.history(held).held_lists == {"board"}
