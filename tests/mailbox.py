"""Reading what routemail delivered: the outbox Maildir, as a mail client would."""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path


@dataclass(frozen=True)
class Delivered:
    """One copy in the outbox: its envelope and the parsed message."""

    path: Path
    envelope_from: str
    recipient: str
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))


def outbox(data_dir: Path) -> list[Delivered]:
    """Every copy in data/maillist/outbox/new, oldest first."""
    new = data_dir / "maillist" / "outbox" / "new"
    if not new.exists():
        return []
    found = []
    for path in sorted(new.iterdir()):
        raw = path.read_bytes()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        envelope = str(msg["Return-Path"]).strip("<>")
        found.append(Delivered(path, envelope, str(msg["Delivered-To"]), msg))
    return found


def recipients(data_dir: Path, subject_part: str = "") -> Counter[str]:
    """How many list copies (mail with a List-Id) each address received, optionally
    only those whose subject contains subject_part."""
    return Counter(
        d.recipient
        for d in outbox(data_dir)
        if "List-Id" in d.message and subject_part in d.subject
    )


def moderation_requests(data_dir: Path) -> list[Delivered]:
    return [d for d in outbox(data_dir) if d.subject.startswith("Moderation needed")]
