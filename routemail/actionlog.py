"""The monthly action log: data/maillist/log/YYYY-MM, one readable line per action."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from routemail import sidecar


class ActionLog:
    """Appends `timestamp id text` lines; the file rolls over each month."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._month = ""
        self._fd: int | None = None
        self._held: list[bytes] | None = None

    @contextlib.contextmanager
    def grouped(self) -> Iterator[None]:
        """Lines written inside go to the file in one write when it ends."""
        if self._held is not None:  # already grouping
            yield
            return
        self._held = []
        try:
            yield
        finally:
            self._write_held()
            self._held = None

    def _write_held(self) -> None:
        if self._held:
            assert self._fd is not None
            os.write(self._fd, b"".join(self._held))
            self._held.clear()

    def write(self, msg_id: str, text: str) -> None:
        when = sidecar.now()
        month = when.strftime("%Y-%m")
        if month != self._month:
            self._write_held()  # last month's lines to last month's file
            self.close()
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(
                self.directory / month, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640
            )
            self._month = month
        line = f"{sidecar.format_time(when)} {msg_id or '-'} {' '.join(text.split())}\n"
        assert self._fd is not None
        if self._held is not None:
            self._held.append(line.encode("utf-8", "replace"))
        else:
            os.write(self._fd, line.encode("utf-8", "replace"))

    def close(self) -> None:
        self._write_held()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._month = ""
