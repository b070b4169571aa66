"""`routemail run`: take the lock, process every entry that needs it, tidy up.

Only one run works at a time. A run that finds the lock taken leaves the
RESCAN mark and exits; the working run looks for the mark after each scan
and again after releasing the lock, so no message waits for cron. The mark
goes down before the lock is tried: whoever then finds the lock taken knows
its holder will still look for the mark.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from filelock import FileLock, Timeout

from routemail import retention, tally
from routemail.actionlog import ActionLog
from routemail.config import Config
from routemail.errors import RoutemailError
from routemail.spool import Spool

Progress = Callable[[int, int, str], None]


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
    lock = FileLock(str(spool.lock_path))
    while True:
        spool.rescan_mark.touch()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            report.busy = report.scans == 0
            return report
        try:
            _scan_until_quiet(config, spool, report, progress)
        finally:
            lock.release()
        # A run refused between our last look and the release left the mark.
        if not spool.rescan_mark.exists():
            return report


def hand_to_working_run(spool: Spool) -> bool:
    """Leave the RESCAN mark; True if a run holds the lock, and so will see it.

    The receiver asks this before starting a run of its own: during a burst
    of mail, one working run serves every message instead of each starting
    a process that would only leave the mark and exit.
    """
    spool.rescan_mark.touch()
    fd = os.open(spool.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the lock, if this took it
    return False


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
        router.close()
        log.close()
