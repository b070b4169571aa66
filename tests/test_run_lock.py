"""One routemail run at a time, and no message left waiting for cron."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import Project
from tests.mailbox import recipients

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
MEMBERS = [f"m{n:03d}@example.com" for n in range(300)]


def post(project: Project, n: int) -> str:
    raw = (
        f"From: ann@example.com\nTo: everyone@lists.example.org\nSubject: Post {n}\n"
        f"Message-ID: <lock-{n}@example.com>\n\nHello.\n"
    ).encode()
    return project.spool.receive(raw, ["everyone@lists.example.org"], PASSING).id


def routemail(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "routemail", *args],
        env=project.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_second_run_leaves_a_mark_and_the_first_scans_again(project: Project) -> None:
    """A run started while another works exits at once saying so; the working run
    then picks up the message that arrived meanwhile before it exits."""
    members = ", ".join(f'"{m}"' for m in MEMBERS)
    project.write_config(
        project.config_path.read_text()
        + f'\n[lists.everyone]\nposters = "anyone"\nmembers = [{members}]\n'
        + "\n[delivery]\nrate = 100\n"  # three seconds of sending: time to arrive meanwhile
    )
    post(project, 1)
    first = routemail(project, "run")
    deadline = time.monotonic() + 30
    while not recipients(project.data_dir, "Post 1") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, "the first run finished before the test could overlap it"
    second_id = post(project, 2)
    second = routemail(project, "run")
    out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    assert out.strip() == "another routemail run is working; it will scan again for new mail"
    assert first.poll() is None
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "in 2 scans" in out
    assert not project.spool.is_pending(second_id)
    assert len(recipients(project.data_dir, "Post 2")) == len(MEMBERS)
    assert not project.spool.rescan_mark.exists()


def test_hand_to_working_run_tells_whether_a_run_holds_the_lock(project: Project) -> None:
    """The receiver's question: the mark is left either way, True only while the lock is held."""
    from filelock import FileLock

    from routemail.run import hand_to_working_run

    spool = project.spool.ensure()
    assert hand_to_working_run(spool) is False
    assert spool.rescan_mark.exists()
    spool.rescan_mark.unlink()
    with FileLock(str(spool.lock_path)):
        assert hand_to_working_run(spool) is True
        assert spool.rescan_mark.exists()
    # Asking did not leave the lock taken.
    lock = FileLock(str(spool.lock_path))
    lock.acquire(timeout=0)
    lock.release()
