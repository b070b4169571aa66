"""Signed POST of a message to the receiver: used by the Lambda and `mailxfer post`."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import BinaryIO

from mailxfer.signing import signed_headers

CHUNK = 1 << 16


@dataclass(frozen=True)
class PostResult:
    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def needs_person(self) -> bool:
        """401 and 413 will not get better by retrying."""
        return self.status in (401, 413)


def sha256_of(stream: BinaryIO) -> tuple[str, int]:
    """Hex digest and length of a seekable stream, which is left rewound."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return digest.hexdigest(), size


def post_message(
    url: str,
    secret: bytes,
    body: BinaryIO,
    recipients: list[str],
    verdicts: dict[str, str],
    *,
    timeout: float = 60.0,
    now: float | None = None,
) -> PostResult:
    """POST a seekable message stream, signed; never raises for an HTTP status."""
    digest, size = sha256_of(body)
    headers = signed_headers(secret, int(now or time.time()), recipients, verdicts, digest)
    headers["Content-Type"] = "message/rfc822"
    headers["Content-Length"] = str(size)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return PostResult(response.status, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return PostResult(exc.code, exc.read().decode("utf-8", "replace"))


def error_text(result: PostResult) -> str:
    """The receiver's JSON error message, or its raw body."""
    try:
        return str(json.loads(result.body).get("error", result.body))
    except (ValueError, AttributeError):
        return result.body.strip()[:200]
