"""Is this site healthy? The checks /healthz, `routemail status` and the alerts share.

Each check is cheap enough to run on every health probe: lists.toml is
validated (without trying dynamic lists' resources), the queue is looked at
with one scandir and one stat per pending entry, never by reading sidecars.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from routemail import config as configmod
from routemail.errors import ConfigError
from routemail.spool import Spool


@dataclass(frozen=True)
class Queue:
    """Queue depth without reading a sidecar: entries, pending ones, the oldest pending."""

    entries: int
    pending: int
    oldest_pending: float | None  # when the oldest pending message arrived (unix time)

    def oldest_pending_age(self, now: float) -> float | None:
        return None if self.oldest_pending is None else max(0.0, now - self.oldest_pending)


def queue(spool: Spool) -> Queue:
    """A pending message's arrival is its message file's mtime: written once on receipt."""
    try:
        entries = spool.stat_entries()
    except FileNotFoundError:  # no QUEUE/ yet: the first post makes it
        entries = []
    arrivals = []
    for msg_id, _mtime, pending in entries:
        if pending:
            try:
                arrivals.append(os.stat(spool.message_path(msg_id)).st_mtime)
            except FileNotFoundError:
                continue
    pending_count = sum(1 for _, _, pending in entries if pending)
    return Queue(len(entries), pending_count, min(arrivals) if arrivals else None)


@dataclass(frozen=True)
class Site:
    """What a health check needs to know: normally the receiver's settings."""

    config_path: Path
    spool: Spool
    has_secret: bool
    max_size: int


def config_problem(path: Path) -> tuple[configmod.Config | None, str | None]:
    """The validated config, or None and one line saying what is wrong with it."""
    try:
        return configmod.load(path), None
    except ConfigError as exc:
        first = exc.problems[0] if exc.problems else "invalid"
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        return None, f"lists.toml does not validate: {first}{more}; see `routemail check`"


def problems(site: Site, now: float | None = None) -> list[str]:
    """Every reason the site cannot take or route mail right now; [] when healthy."""
    now = time.time() if now is None else now
    found: list[str] = []
    config, problem = config_problem(site.config_path)
    if problem:
        found.append(problem)
    spool = site.spool
    unusable = spool.unusable()
    if unusable:
        return [*found, *unusable]
    free = spool.free_bytes()
    if free < site.max_size:
        found.append(
            f"only {free / 2**20:.1f} MiB free on the spool's filesystem; a message may "
            f"take {site.max_size / 2**20:.1f} MiB ([receiver] max_size): free some space"
        )
    if not site.has_secret:
        found.append("no shared secret: set MAILRECV_SECRET or receiver.secret_file")
    limit = (config.monitoring if config else configmod.Monitoring()).pending_alert_minutes
    age = queue(spool).oldest_pending_age(now)
    if age is not None and age > limit * 60:
        found.append(
            f"the oldest pending message arrived {age / 60:.0f} minutes ago "
            f"(more than [monitoring] pending_alert_minutes = {limit:g}); "
            "see `routemail status` and `routemail queue --state pending`"
        )
    return found
