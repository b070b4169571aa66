"""The outbox transport: a Maildir a mail reader opens, through open_transport."""

from __future__ import annotations

import mailbox
import shutil

from routemail import config as configuration
from routemail.transports import SENT, TEMPORARY, open_transport
from tests.conftest import BASE_CONFIG, Project

SENDER = "volunteers-bounces@lists.example.org"


def test_outbox_is_the_default_and_writes_a_maildir(project: Project) -> None:
    """Without [delivery] copies land in data/maillist/outbox/new as a local MDA writes them,
    Return-Path and Delivered-To first, the copy's own line endings kept."""
    project.write_config(BASE_CONFIG + "\n[delivery]\nrate = 1000\n")
    transport = open_transport(configuration.load(project.config_path), project.spool)
    copies = {
        "ann@example.com": b"Subject: one\n\nbody\n",
        "bob@example.net": b"Subject: two\r\n\r\nbody\r\n",
    }
    try:
        results = {r: transport.send(SENDER, r, data, {"list": "v"}) for r, data in copies.items()}
    finally:
        transport.close()
    assert {r.outcome for r in results.values()} == {SENT}
    box = mailbox.Maildir(project.spool.root / "outbox", create=False)
    by_recipient = {m["Delivered-To"]: m for m in box}
    assert sorted(by_recipient) == sorted(copies)
    assert by_recipient["ann@example.com"]["Return-Path"] == f"<{SENDER}>"
    new = project.spool.root / "outbox" / "new"
    for recipient, data in copies.items():
        written = (new / results[recipient].detail).read_bytes()
        newline = b"\r\n" if b"\r\n" in data else b"\n"
        head = b"Return-Path: <%s>%sDelivered-To: %s%s" % (
            SENDER.encode(),
            newline,
            recipient.encode(),
            newline,
        )
        assert written == head + data


def test_unwritable_outbox_is_temporary(project: Project) -> None:
    """When the Maildir cannot be written the copy is TEMPORARY (retried), never lost."""
    project.write_config(BASE_CONFIG + "\n[delivery]\nrate = 1000\nretries = 0\n")
    transport = open_transport(configuration.load(project.config_path), project.spool)
    tmp = project.spool.root / "outbox" / "tmp"
    shutil.rmtree(tmp)
    tmp.write_text("not a directory")
    try:
        result = transport.send(SENDER, "ann@example.com", b"Subject: x\n\nbody\n", {})
    finally:
        transport.close()
    assert result.outcome == TEMPORARY and result.detail.startswith("outbox:")


def test_outbox_cleans_bare_line_breaks_and_nul(project: Project) -> None:
    """A copy with bare CRs, a CRLF and a NUL is written with its own line break (LF
    here) throughout and without the NUL, as every transport cleans what it sends."""
    project.write_config(BASE_CONFIG + "\n[delivery]\nrate = 1000\n")
    transport = open_transport(configuration.load(project.config_path), project.spool)
    data = b"Subject: x\n\nline\r.\r\nMAIL FROM:<m@evil.example>\nNUL\x00 here\n"
    try:
        result = transport.send(SENDER, "ann@example.com", data, {"list": "v"})
    finally:
        transport.close()
    written = (project.spool.root / "outbox" / "new" / result.detail).read_bytes()
    assert written.endswith(b"Subject: x\n\nline\n.\nMAIL FROM:<m@evil.example>\nNUL here\n")
    assert b"\r" not in written and b"\x00" not in written
