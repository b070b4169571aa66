"""The monthly action log: data/maillist/log/YYYY-MM, one readable line per action."""

from __future__ import annotations

import os
from pathlib import Path

from routemail import sidecar


class ActionLog:
    """Appends `timestamp id text` lines; the file rolls over each month."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._month = ""
        self._fd: int | None = None

    def write(self, msg_id: str, text: str) -> None:
        when = sidecar.now()
        month = when.strftime("%Y-%m")
        if month != self._month:
            self.close()
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(
                self.directory / month, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640
            )
            self._month = month
        line = f"{sidecar.format_time(when)} {msg_id or '-'} {' '.join(text.split())}\n"
        assert self._fd is not None
        os.write(self._fd, line.encode("utf-8", "replace"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._month = ""
