"""The receiver app for SNS tests: the test certificate handed in through create_app.

SNS_TEST_CERT names a PEM file the test wrote, served for the test's
certificate URL; another certificate URL on the same host is served the file
of its name beside SNS_TEST_CERT if there is one (a test's expired
certificate), and fails as a missing file would otherwise.
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
        cert = Path(os.environ["SNS_TEST_CERT"])
        if url == CERT_URL:
            return cert.read_bytes()
        beside = cert.parent / url.rpartition("/")[2]
        if url.rpartition("/")[0] != CERT_URL.rpartition("/")[0] or not beside.is_file():
            raise FileNotFoundError(f"404 Not Found: {url}")
        return beside.read_bytes()
    with open(os.environ["SNS_TEST_LOG"], "a", encoding="utf-8") as log:
        log.write(url + "\n")
    return b"<ConfirmSubscriptionResponse/>"


app = create_app({"sns_fetch": fetch})
