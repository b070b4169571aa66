"""The receiver app for SNS tests: the test certificate handed in through create_app.

SNS_TEST_CERT names a PEM file the test wrote; every other URL the app GETs
(subscription confirmations) is appended to SNS_TEST_LOG instead of fetched.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailrecv.app import create_app


def fetch(url: str) -> bytes:
    if url.endswith(".pem"):
        return Path(os.environ["SNS_TEST_CERT"]).read_bytes()
    with open(os.environ["SNS_TEST_LOG"], "a", encoding="utf-8") as log:
        log.write(url + "\n")
    return b"<ConfirmSubscriptionResponse/>"


app = create_app({"sns_fetch": fetch})
