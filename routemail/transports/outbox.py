"""The outbox transport: a Maildir under data/maillist/outbox, no network.

Each copy is written as a local MDA would deliver it, with Return-Path and
Delivered-To on top, so `mutt -f data/maillist/outbox` reads it. A copy keeps its
own line break (LF or CRLF), used throughout: bare CRs and LFs and NUL bytes are
cleaned as for SMTP (routemail.transports.wire).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from routemail.transports import PERMANENT, SENT, TEMPORARY, Result
from routemail.transports.wire import line_breaks, own_line_break


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for sub in ("tmp", "new", "cur"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")
        self._count = 0

    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        newline = own_line_break(message)
        message = line_breaks(message, newline)
        envelope = b"Return-Path: <%s>%sDelivered-To: %s%s" % (
            sender.encode(),
            newline,
            recipient.encode(),
            newline,
        )
        self._count += 1
        name = f"{time.time_ns()}.P{os.getpid()}Q{self._count}R{secrets.token_hex(4)}.{self._host}"
        tmp = self.directory / "tmp" / name
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                os.write(fd, envelope)
                view = memoryview(message)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.directory / "new" / name)
        except OSError as exc:
            outcome = PERMANENT if exc.errno is None else TEMPORARY
            return Result(outcome, f"outbox: {exc.strerror or exc}")
        return Result(SENT, name)

    def close(self) -> None:
        pass
