"""The receiver app for SNS tests: the test certificate handed in through create_app.

SNS_TEST_CERT names a PEM file the test wrote, served for the test's
certificate URL; any other certificate URL fails as a missing file would.
Certificate fetches are appended to SNS_TEST_CERT_LOG when that is set; every
other URL the app GETs (subscription confirmations) is appended to
SNS_TEST_LOG instead of fetched.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailrecv.app import create_app
from tests.snskeys import CERT_URL


def fetch(url: str) -> bytes:
    if url.endswith(".pem"):
        if cert_log := os.environ.get("SNS_TEST_CERT_LOG"):
            with open(cert_log, "a", encoding="utf-8") as log:
                log.write(url + "\n")
        if url != CERT_URL:
            raise FileNotFoundError(f"404 Not Found: {url}")
        return Path(os.environ["SNS_TEST_CERT"]).read_bytes()
    with open(os.environ["SNS_TEST_LOG"], "a", encoding="utf-8") as log:
        log.write(url + "\n")
    return b"<ConfirmSubscriptionResponse/>"


app = create_app({"sns_fetch": fetch})
