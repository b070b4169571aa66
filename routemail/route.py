"""Routing decisions for one queue entry (placeholder seam; filled in by routing work)."""

from __future__ import annotations

from routemail.actionlog import ActionLog
from routemail.config import Config
from routemail.spool import Spool


class Router:
    def __init__(self, config: Config, spool: Spool, log: ActionLog) -> None:
        self.config, self.spool, self.log = config, spool, log

    def process(self, msg_id: str) -> str | None:
        self.log.write(msg_id, "processed")
        self.spool.set_pending(msg_id, False)
        return None

    def housekeeping(self) -> int:
        return 0

    def close(self) -> None:
        pass
