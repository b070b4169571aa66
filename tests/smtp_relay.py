"""An aiosmtpd relay on loopback that records what it accepts, for routemail to send to."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import BASE_CONFIG, Project, free_port


@dataclass
class Delivered:
    sender: str
    recipients: list[str]
    content: bytes
    peer: Any
    tls: bool
    login: bytes | None
    mail_options: list[str] = field(default_factory=list)


@dataclass
class Recorder:
    """Records what it accepts; refuses by local part: busy* 451, nobody* 550,
    slow* 454 twice, drop* loses the connection in its first DATA."""

    close_after_each: bool = False
    messages: list[Delivered] = field(default_factory=list)
    rcpt_attempts: Counter[str] = field(default_factory=Counter)
    data_attempts: Counter[str] = field(default_factory=Counter)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.rcpt_attempts[address] += 1
        local = address.split("@")[0]
        if local.startswith("busy"):
            return "451 4.2.1 Mailbox busy, try again later"
        if local.startswith("nobody"):
            return "550 5.1.1 No such user here"
        if local.startswith("slow") and self.rcpt_attempts[address] <= 2:
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded."
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        first = envelope.rcpt_tos[0]
        self.data_attempts[first] += 1
        if first.startswith("drop") and self.data_attempts[first] == 1:
            server.transport.abort()
            return "451 4.3.0 lost"
        self.messages.append(
            Delivered(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                session.peer,
                session.ssl is not None,
                session.auth_data.login if session.authenticated else None,
                list(envelope.mail_options),
            )
        )
        if self.close_after_each:
            # Closes once the 250 below is written: an idle connection the server dropped.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 2.0.0 Accepted"


@contextlib.contextmanager
def relay_for(
    project: Project,
    delivery: str = "",
    lists: str = "",
    smtp: str = "",
    handler: Recorder | None = None,
    smtputf8: bool = False,
) -> Iterator[Recorder]:
    """A Recorder relay on loopback (or the one given), and the project's lists.toml
    sending through it (transport smtp, no TLS); `delivery` adds [delivery] keys,
    `smtp` [delivery.smtp] keys, `lists` more tables; smtputf8: it offers SMTPUTF8."""
    handler = handler or Recorder()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=smtputf8
    )
    controller.start()
    project.write_config(
        BASE_CONFIG
        + lists
        + f"""
[delivery]
transport = "smtp"
rate = 1000
{delivery}
[delivery.smtp]
host = "127.0.0.1"
port = {controller.port}
tls = "none"
{smtp}
"""
    )
    try:
        yield handler
    finally:
        controller.stop()
