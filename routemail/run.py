"""`routemail run`: take the lock, process every entry that needs it, tidy up.

Only one run works at a time. A run that finds the lock taken leaves the
RESCAN mark and exits; the working run looks for the mark after each scan
and again after releasing the lock, so no message waits for cron. The mark
goes down before the lock is tried: whoever then finds the lock taken knows
its holder will still look for the mark.

The receiver starts a run by taking the lock itself and handing it to the
process it starts (an inherited descriptor named in ROUTEMAIL_RUN_LOCK_FD),
so the lock is held from the moment a run is decided on: a burst of posts
arriving while that process is still starting up finds it taken and starts
no other run.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from filelock import FileLock, Timeout

from routemail import retention, runstate, tally
from routemail.actionlog import ActionLog
from routemail.config import Config
from routemail.errors import RoutemailError
from routemail.spool import Spool

Progress = Callable[[int, int, str], None]
LOCK_FD_ENV = "ROUTEMAIL_RUN_LOCK_FD"


@dataclass
class RunReport:
    """What a run did, for the CLI's summary and --json."""

    busy: bool = False
    scans: int = 0
    processed: int = 0
    removed: int = 0
    webhooks_delivered: int = 0
    webhooks_pending: int = 0
    tally: tally.Tally = field(default_factory=tally.Tally)
    circuit_open: bool = False  # the transport took nothing at the end

    @property
    def errors(self) -> list[str]:
        return self.tally.errors


def run(
    config: Config,
    spool: Spool,
    *,
    progress: Progress | None = None,
    on_copy: tally.OnCopy | None = None,
) -> RunReport:
    """Process the queue until no work is left that this run could see."""
    spool.ensure()
    report = RunReport()
    report.tally.on_copy = on_copy
    started = time.time()
    _work(config, spool, report, progress)
    if report.scans:
        _record(config, spool, report, started)
    return report


def _record(config: Config, spool: Spool, report: RunReport, started: float) -> None:
    """Keep the run's record (status, /metrics) and mail the admin if delivery has
    been failing too long."""
    from routemail import alerts

    try:
        state = runstate.record(
            spool.root.parent,
            report.tally,
            started=started,
            finished=time.time(),
            processed=report.processed,
            circuit=report.circuit_open,
        )
        alerts.remember_config(config, spool.root.parent)
    except OSError as exc:
        report.tally.problem(tally.ERROR, "run record", f"cannot write: {exc}")
        return
    if why := alerts.after_run(config, spool, state):
        report.tally.problem(tally.UNDELIVERED, "alerts", why)


def _work(config: Config, spool: Spool, report: RunReport, progress: Progress | None) -> None:
    lock = FileLock(str(spool.lock_path))
    handed = _handed_lock(spool)
    release: Callable[[], object]
    while True:
        spool.rescan_mark.touch()
        if handed is not None:
            release, handed = functools.partial(os.close, handed), None
        else:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                report.busy = report.scans == 0
                return
            release = lock.release
        try:
            _scan_until_quiet(config, spool, report, progress)
        finally:
            release()
        # A run refused between our last look and the release left the mark.
        if not spool.rescan_mark.exists():
            return


def lock_for_new_run(spool: Spool) -> int | None:
    """Leave the RESCAN mark, then take the lock for a run about to be started.

    None when a run holds the lock already: it will see the mark, and no
    other run is needed. Otherwise a descriptor holding the lock, to be
    passed to the new run (`pass_fds`, its number in ROUTEMAIL_RUN_LOCK_FD)
    and then closed by the caller; the lock lasts as long as the run keeps it.
    """
    spool.rescan_mark.touch()
    fd = os.open(spool.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _handed_lock(spool: Spool) -> int | None:
    """The lock the starter of this process took for it, if it was handed one.

    Believed only for a descriptor open on this spool's LOCK file; the
    variable is removed so that nothing this run starts inherits the claim.
    """
    text = os.environ.pop(LOCK_FD_ENV, "")
    if not text.isdigit():
        return None
    fd = int(text)
    try:
        handed, ours = os.fstat(fd), os.stat(spool.lock_path)
    except OSError:
        return None
    if (handed.st_dev, handed.st_ino) != (ours.st_dev, ours.st_ino):
        return None
    os.set_inheritable(fd, False)
    return fd


def _scan_until_quiet(
    config: Config, spool: Spool, report: RunReport, progress: Progress | None
) -> None:
    from routemail.route import Router

    log = ActionLog(spool.root / "log")
    router = Router(config, spool, log, counts=report.tally)
    try:
        while True:
            with contextlib.suppress(FileNotFoundError):
                spool.rescan_mark.unlink()
            report.scans += 1
            pending = spool.pending_ids()
            for n, msg_id in enumerate(pending, start=1):
                if progress:
                    progress(n, len(pending), msg_id)
                error = router.process(msg_id)
                report.processed += 1
                if error:
                    report.tally.problem(tally.ERROR, msg_id, error)
            if not spool.rescan_mark.exists():
                break
        report.removed += retention.tidy(config, spool, log)
        if config.webhooks.urls:
            try:
                report.webhooks_delivered, report.webhooks_pending = router.webhooks.deliver_due()
            except RoutemailError as exc:
                report.tally.problem(tally.ERROR, "webhooks", str(exc))
    finally:
        report.circuit_open = router.circuit_open
        router.close()
        log.close()
