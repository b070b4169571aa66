"""Health you can ask for: /healthz reasons, `routemail status`, /metrics, admin alerts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

from routemail import config as configmod
from tests.conftest import (
    BASE_CONFIG,
    Project,
    Receiver,
    RunCli,
    free_port,
    running_receiver,
    tmpfs_data_dir,
)
from tests.mailbox import outbox
from tests.test_receiver import MESSAGE, post
from tests.test_receiver import PASS as PASSING
from tests.test_run_visibility import Refusing, closed_port, queue_post


def test_monitoring_section_is_validated(project: Project) -> None:
    """[monitoring] takes positive minutes; anything else is named with its line."""
    project.write_config(BASE_CONFIG + "\n[monitoring]\npending_alert_minutes = 15\n")
    assert configmod.load(project.config_path).monitoring.pending_alert_minutes == 15.0
    project.write_config(
        BASE_CONFIG + "\n[monitoring]\ndelivery_alert_minutes = -1\npending_minutes = 3\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "routemail", "check"],
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "monitoring.delivery_alert_minutes" in done.stderr
    assert "monitoring.pending_minutes" in done.stderr


# -- /healthz under gunicorn: one test per reason ------------------------------------------


def healthz(receiver: Receiver) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(receiver.url + "/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, json.loads(answer.read())


def test_healthz_is_503_when_lists_toml_stops_validating(receiver: Receiver) -> None:
    assert healthz(receiver) == (200, {"ok": True})
    receiver.project.write_config(BASE_CONFIG + "\n[lists.broken]\nmembers = [42]\n")
    status, answer = healthz(receiver)
    assert status == 503
    assert answer["ok"] is False
    assert "lists.toml does not validate" in answer["error"]
    assert "lists.broken.members" in answer["error"]
    receiver.project.write_config(BASE_CONFIG)
    assert healthz(receiver) == (200, {"ok": True})


def test_healthz_is_503_without_the_shared_secret(project: Project) -> None:
    with running_receiver(project, extra_env={"MAILRECV_SECRET": None}) as r:
        status, answer = healthz(r)
    assert status == 503
    assert "no shared secret" in answer["error"]


def test_healthz_is_503_when_the_oldest_pending_entry_is_too_old(receiver: Receiver) -> None:
    """The arrival of a pending message is its file's mtime; older than
    [monitoring] pending_alert_minutes means mail is stuck."""
    project = receiver.project
    project.write_config(BASE_CONFIG + "\n[monitoring]\npending_alert_minutes = 30\n")
    msg_id = project.spool.receive(MESSAGE, ["volunteers@lists.example.org"], PASSING).id
    assert healthz(receiver)[0] == 200
    two_hours_ago = time.time() - 7200
    os.utime(project.spool.message_path(msg_id), (two_hours_ago, two_hours_ago))
    status, answer = healthz(receiver)
    assert status == 503
    assert "the oldest pending message arrived 120 minutes ago" in answer["error"]
    project.spool.set_pending(msg_id, False)  # routed: nothing waits any more
    assert healthz(receiver)[0] == 200


@pytest.fixture
def small_filesystem(project: Project) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted as the project's data directory (root only)."""
    with tmpfs_data_dir(project, "2m") as data_dir:
        yield data_dir


def test_healthz_is_503_when_the_spool_has_less_room_than_max_size(
    project: Project, small_filesystem: Path
) -> None:
    """Less free space than [receiver] max_size: not ok (every big post would get 503);
    with a max_size the filesystem can hold, ok."""
    with running_receiver(project) as r:
        status, answer = healthz(r)
        assert status == 503
        assert "MiB free on the spool's filesystem" in answer["error"]
        assert "max_size" in answer["error"]
    project.write_config(BASE_CONFIG.replace("[receiver]\n", "[receiver]\nmax_size = 500000\n"))
    with running_receiver(project) as r:
        assert healthz(r) == (200, {"ok": True})
        # Filling the filesystem (another writer) makes it not ok again.
        (small_filesystem / "filler").write_bytes(b"x" * 1_700_000)
        status, answer = healthz(r)
        assert status == 503
        assert "MiB free" in answer["error"]


# -- /metrics ------------------------------------------------------------------------------


def scrape(receiver: Receiver, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(receiver.url + "/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, answer.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


@pytest.mark.parametrize("workers", [2])
def test_metrics_count_posts_across_workers_and_read_the_queue_and_runs(
    receiver: Receiver, routemail_cli: RunCli
) -> None:
    """Posts by status (summed over gunicorn's workers), queue depth, oldest pending age,
    copies by list and the last run's duration, in the Prometheus text format."""
    for n in range(6):
        raw = MESSAGE.replace(b"Message-ID: <", f"Message-ID: <metrics-{n}-".encode())
        assert post(receiver, raw)[0] == 200
    assert post(receiver, MESSAGE, secret="wrong")[0] == 401
    status, text = scrape(receiver)
    assert status == 200, text
    assert sample(text, "mailrecv_posts_total", status="200") == 6
    assert sample(text, "mailrecv_posts_total", status="401") == 1
    assert sample(text, "routemail_queue_pending") == 6
    age = sample(text, "routemail_oldest_pending_age_seconds")
    assert age is not None and 0 <= age < 600

    done = routemail_cli("run")
    assert done.returncode == 0, done.stderr
    status, text = scrape(receiver)
    assert sample(text, "routemail_queue_pending") == 0
    assert sample(text, "routemail_copies_total", list="volunteers", outcome="sent") == 18
    assert sample(text, "routemail_copies_total", list="volunteers", outcome="deferred") == 0
    assert sample(text, "routemail_runs_total") == 1
    duration = sample(text, "routemail_last_run_duration_seconds")
    assert duration is not None and duration > 0
    assert sample(text, "routemail_last_run_ok") == 1


def test_metrics_only_on_this_host_unless_a_token_is_set(project: Project) -> None:
    """Without a token: loopback clients only, and none that came through a proxy.
    With MAILRECV_METRICS_TOKEN: only that bearer token, compared in constant time."""
    with running_receiver(project) as r:
        assert scrape(r)[0] == 200
        status, text = scrape(r, {"X-Forwarded-For": "203.0.113.9"})
        assert status == 403
        assert "MAILRECV_METRICS_TOKEN" in text
    token = "metrics-token-0123456789"
    with running_receiver(project, extra_env={"MAILRECV_METRICS_TOKEN": token}) as r:
        assert scrape(r)[0] == 403
        assert scrape(r, {"Authorization": "Bearer wrong"})[0] == 403
        status, text = scrape(r, {"Authorization": f"Bearer {token}"})
        assert status == 200
        assert "routemail_queue_entries" in text


# -- routemail status ----------------------------------------------------------------------


def test_status_tells_queue_last_run_transport_and_suppressions(
    project: Project, routemail_cli: RunCli
) -> None:
    """After a good run, after a run with the relay down, and with lists.toml broken."""
    queue_post(project, 1, "volunteers")
    held = queue_post(project, 2, "board")  # Ann may not post to board
    assert routemail_cli("suppression", "add", "gone@example.com").returncode == 0
    assert routemail_cli("run").returncode == 0
    done = routemail_cli("status", "--json")
    assert done.returncode == 0, done.stdout
    status = json.loads(done.stdout)
    assert status["config"]["valid"] is True
    # Done: the volunteers post, and Ann's notice that her board post is held.
    assert status["queue"] == {"pending": 0, "held": 1, "done": 2, "discarded": 0}
    assert status["held"] == 1
    assert status["last_run"]["result"] == "ok"
    assert status["last_run"]["counts"]["sent"] == 4
    assert status["last_run"]["counts"]["held"] == 1
    assert status["transport"]["name"] == "outbox"
    assert status["transport"]["last_success"] is not None
    assert status["transport"]["circuit_open"] is False
    assert status["suppressed"] == 1
    assert status["problems"] == []
    assert held

    project.write_config(
        BASE_CONFIG
        + '\n[delivery]\ntransport = "smtp"\nretries = 0\n'
        + f'\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {closed_port()}\ntls = "none"\n'
    )
    waiting = queue_post(project, 3, "volunteers")
    assert routemail_cli("run").returncode == 3
    text = routemail_cli("status")
    assert text.returncode == 0, text.stdout
    assert "queue:       1 pending, 1 held, 2 done, 0 discarded" in text.stdout
    assert "undelivered" in text.stdout
    assert "ConnectionRefusedError" in text.stdout
    assert "circuit open" in text.stdout
    assert "failing since" in text.stdout
    status = json.loads(routemail_cli("status", "--json").stdout)
    assert status["oldest_pending_age_seconds"] is not None
    assert status["last_run"]["counts"]["deferred"] == 3
    assert status["transport"]["circuit_open"] is True
    assert waiting

    project.write_config(BASE_CONFIG + "\n[lists.broken]\nmembers = [42]\n")
    broken = routemail_cli("status")
    assert broken.returncode == 1
    assert "config:" in broken.stdout and "INVALID" in broken.stdout
    assert "problem:     lists.toml does not validate" in broken.stdout


# -- mail to the admin ---------------------------------------------------------------------


class Recording(Refusing):
    """Refusing, keeping each accepted message."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return await super().handle_DATA(server, session, envelope)


def test_admin_is_mailed_once_a_day_when_delivery_keeps_failing(
    project: Project, routemail_cli: RunCli
) -> None:
    """Every member's server says 451: runs defer and send nothing; once that has lasted
    longer than delivery_alert_minutes, the admin gets one mail, and no second that day."""
    handler = Recording()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        project.write_config(
            BASE_CONFIG
            + '\n[delivery]\ntransport = "smtp"\nretries = 0\n'
            + f'\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {controller.port}\ntls = "none"\n'
            + "\n[monitoring]\ndelivery_alert_minutes = 0.01\n"
            + '\n[lists.helpers]\nposters = "anyone"\nmembers = ["busy1@example.com", '
            + '"busy2@example.com"]\n'
        )
        queue_post(project, 1, "helpers")
        assert routemail_cli("run").returncode == 3
        time.sleep(1)  # longer than 0.01 minutes
        assert routemail_cli("run").returncode == 3
        assert routemail_cli("run").returncode == 3
    finally:
        controller.stop()
    alerts = [content for to, content in handler.messages if to == ["admin@example.org"]]
    assert len(alerts) == 1, handler.messages
    assert b"Subject: routemail: delivery failing since " in alerts[0]
    assert b"451 4.2.1 Mailbox busy" in alerts[0]
    assert b"Auto-Submitted: auto-generated" in alerts[0]


def test_admin_is_mailed_once_when_lists_toml_stops_validating(
    project: Project, routemail_cli: RunCli
) -> None:
    """The run keeps the last lists.toml that validated; when the file breaks, the admin
    is told through that copy's transport (the outbox here), once, with the problems."""
    assert routemail_cli("run").returncode == 0
    project.write_config(BASE_CONFIG + "\n[lists.broken]\nmembers = [42]\n")
    for _ in range(2):
        broken = routemail_cli("run")
        assert broken.returncode == 2
        assert "lists.broken.members" in broken.stderr
    mails = [m for m in outbox(project.data_dir) if m.recipient == "admin@example.org"]
    assert len(mails) == 1
    assert mails[0].subject == "routemail: lists.toml does not validate"
    body = mails[0].message.get_body(("plain",))
    assert body is not None and "lists.broken.members" in body.get_content()


def test_posts_are_answered_when_the_metrics_directory_is_unusable(project: Project) -> None:
    """Counting is never worth a refused post: with PROMETHEUS_MULTIPROC_DIR a plain
    file, the receiver starts, queues mail and answers 200."""
    in_the_way = project.root / "metrics-in-the-way"
    in_the_way.write_text("not a directory\n")
    with running_receiver(project, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(in_the_way)}) as r:
        status, answer = post(r, MESSAGE)
        assert status == 200
        assert project.spool.is_pending(str(answer["id"]))
        assert healthz(r)[0] == 200
