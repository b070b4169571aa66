"""Which messages no person sent (routemail.message.Headers.machine_made)."""

from __future__ import annotations

import pytest

from routemail.message import Headers


def head(extra: str) -> bytes:
    return f"From: ann@example.com\nTo: x@lists.example.org\nSubject: s\n{extra}\nbody\n".encode()


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ("", None),
        ("Auto-Submitted: no\n", None),
        ("Auto-Submitted: No (a person wrote this)\n", None),
        ("Auto-Submitted: auto-replied\n", "Auto-Submitted: auto-replied"),
        ("Auto-Submitted: auto-generated; owner-email=a@b\n", "Auto-Submitted: auto-generated"),
        ("Auto-Submitted: auto-notified (vacation)\n", "Auto-Submitted: auto-notified"),
        ("Auto-Submitted: no\nAuto-Submitted: auto-replied\n", "auto-replied"),
        ("Auto-Submitted:\n", "Auto-Submitted: (empty)"),
        ("Return-Path: <>\n", "a delivery status notification"),
        ("Return-Path: < >\n", "a delivery status notification"),
        ("Return-Path: <ann@example.com>\n", None),
        ('Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n', "a deli"),
        ("Content-Type: Multipart/Report; boundary=b\n", "a delivery status notification"),
        ("Precedence: bulk\n", None),
    ],
)
def test_machine_made(extra: str, why: str | None) -> None:
    """A report (multipart/report or a null Return-Path) or Auto-Submitted other than "no"
    (its comments ignored) is machine-made; Precedence alone is not."""
    found = Headers.of(head(extra)).machine_made
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found
