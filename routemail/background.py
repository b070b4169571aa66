"""Starting `routemail run` in the background once mail is queued (the receiver, inject)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from routemail.run import LOCK_FD_ENV, lock_for_new_run
from routemail.spool import Spool

RUN_LOG = "run.log"  # under the data directory
# Runs started from this process, kept until they are seen to have exited: a
# Popen dropped while its process runs is a ResourceWarning (an error under the
# tests' warning filters), and a child nobody waits for stays a zombie.
_started: list[subprocess.Popen[bytes]] = []


def start_run(config_path: Path, data_dir: Path, warn: Callable[[str], None]) -> int | None:
    """Start `routemail run --quiet` in its own session and do not wait for it, unless
    a run is working already: it will see the new message. The pid, or None.

    The new run is handed the lock taken here, so the posts of a burst that
    arrive while it starts up find it taken and start no run of their own. Its
    output is appended to data/run.log. Problems go to warn: the message is safe
    in the spool either way, and the timer or cron routes it.
    """
    try:
        lock_fd = lock_for_new_run(Spool(data_dir / "maillist"))
    except OSError as exc:
        warn(f"cannot tell whether routemail run is working ({exc}); starting one")
        lock_fd = -1
    if lock_fd is None:
        return None
    _started[:] = [p for p in _started if p.poll() is None]
    env = dict(os.environ)
    env["ROUTEMAIL_CONFIG"] = str(config_path)
    env["ROUTEMAIL_DATA"] = str(data_dir)
    if lock_fd >= 0:
        env[LOCK_FD_ENV] = str(lock_fd)
    output = _open_run_log(data_dir, warn)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "routemail", "run", "--quiet"],
            env=env,
            cwd=config_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            pass_fds=(lock_fd,) if lock_fd >= 0 else (),
        )
    except OSError as exc:
        warn(f"cannot start routemail run: {exc}")
        return None
    finally:
        if output >= 0:
            os.close(output)
        if lock_fd >= 0:
            os.close(lock_fd)  # the run holds the lock through its own copy
    _started.append(process)
    return process.pid


def _open_run_log(data_dir: Path, warn: Callable[[str], None]) -> int:
    """data/run.log, appended to: what a background run says (with --quiet, only
    its problems) is kept where an operator looks, not thrown away."""
    path = data_dir / RUN_LOG
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as exc:
        warn(f"cannot open {path} ({exc.strerror}); the run's output is lost")
        return subprocess.DEVNULL
