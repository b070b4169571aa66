"""A run's failures are visible: sidecar lines, the summary, exit status, --quiet, run.log."""

from __future__ import annotations

import time

from tests.conftest import BASE_CONFIG, Project, running_receiver
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
