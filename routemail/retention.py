"""Keeping the queue small: holds expire, finished entries leave after retention_days.

Only entries whose sidecar has not changed for the shorter of the two
periods are read at all, so the scan stays cheap however long the service runs.
"""

from __future__ import annotations

import contextlib
import time

from routemail import authornotices, sidecar
from routemail.actionlog import ActionLog
from routemail.config import Config
from routemail.errors import UnknownMessage
from routemail.message import Headers
from routemail.spool import Spool
from routemail.webhooks import Outbox

DAY = 86400.0


def tidy(config: Config, spool: Spool, log: ActionLog, now: float | None = None) -> int:
    """Expire old holds (E lines) and remove old finished entries; how many were removed."""
    now = now or time.time()
    hold = config.moderation.hold_days * DAY
    keep = config.retention.retention_days * DAY
    removed = 0
    hooks = Outbox(spool.root.parent, config.webhooks)
    for msg_id, mtime, pending in spool.stat_entries():
        age = now - mtime
        if pending or age < min(hold, keep):
            continue
        history = spool.history(msg_id)
        held = history.held_lists
        if held and age >= hold:
            for name in sorted(held):
                spool.append(msg_id, [sidecar.event(sidecar.EXPIRED, name)])
                hooks.decision("expired", spool, msg_id, name, None, "expiry")
                log.write(
                    msg_id, f"{name}: hold expired after {config.moderation.hold_days:g} days"
                )
            # Only an author told of the hold hears of its end (routemail.authornotices).
            if told := sorted(held & history.told(authornotices.HELD)):
                with contextlib.suppress(UnknownMessage):
                    headers = Headers.of(spool.read_message(msg_id))
                    authornotices.tell(
                        config, spool, msg_id, headers, authornotices.EXPIRED, told, log=log
                    )
        elif not held and age >= keep:
            spool.remove(msg_id)
            log.write(msg_id, "removed from the queue (retention)")
            removed += 1
    spool.clean_temp(now)
    return removed
