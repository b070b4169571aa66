"""One routemail run at a time, and no message left waiting for cron."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from filelock import FileLock, Timeout

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


def test_lock_for_new_run_is_none_while_a_run_holds_the_lock(project: Project) -> None:
    """The receiver's question: the mark is left either way; None while a run holds the
    lock, else a descriptor holding it, and the lock is free again once that is closed."""
    from routemail.run import lock_for_new_run

    spool = project.spool.ensure()
    fd = lock_for_new_run(spool)
    assert fd is not None
    assert spool.rescan_mark.exists()
    try:
        assert lock_for_new_run(spool) is None
        with pytest.raises(Timeout):
            FileLock(str(spool.lock_path)).acquire(timeout=0)
    finally:
        os.close(fd)
    spool.rescan_mark.unlink()
    with FileLock(str(spool.lock_path)):
        assert lock_for_new_run(spool) is None
        assert spool.rescan_mark.exists()
    lock = FileLock(str(spool.lock_path))
    lock.acquire(timeout=0)
    lock.release()


def test_a_run_handed_the_lock_works_under_it(project: Project) -> None:
    """`routemail run` started with the lock taken for it (as the receiver starts it) routes
    under that lock and releases it; without the hand-over it would find the lock taken."""
    from routemail.run import LOCK_FD_ENV, lock_for_new_run

    spool = project.spool.ensure()
    msg_id = post(project, 3)
    fd = lock_for_new_run(spool)
    assert fd is not None
    env = {**project.env(), LOCK_FD_ENV: str(fd)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "routemail", "run"],
            env=env,
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert "another routemail run is working" not in done.stdout
    assert not spool.is_pending(msg_id)
    lock = FileLock(str(spool.lock_path))
    lock.acquire(timeout=0)
    lock.release()
