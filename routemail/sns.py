"""Amazon SNS message signatures: verify before believing anything in a message.

The signing certificate is fetched only from an https URL whose host is
sns.<region>.amazonaws.com[.cn] and whose path ends in .pem; certificates
are cached. Signature version 1 is SHA1withRSA, version 2 SHA256withRSA.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from routemail.errors import RoutemailError

CERT_HOST = re.compile(r"^sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?$")
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERT_BYTES = 64 * 1024

CertFetcher = Callable[[str], bytes]


class SnsError(RoutemailError):
    """An SNS message that must not be believed."""


def check_sns_url(url: str) -> None:
    """Raise SnsError unless url is https on an SNS host (no port, no user)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        raise SnsError(f"URL {url!r} is not https")
    if parts.port is not None or parts.username or not CERT_HOST.match(parts.hostname or ""):
        raise SnsError(f"URL {url!r} is not on an SNS host")


def check_cert_url(url: str) -> None:
    if not urllib.parse.urlsplit(url).path.endswith(".pem"):
        raise SnsError(f"certificate URL {url!r} is not a .pem file")
    try:
        check_sns_url(url)
    except SnsError as exc:
        raise SnsError(f"certificate {exc}") from None


def fetch_certificate(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read(MAX_CERT_BYTES))


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    kind = message.get("Type")
    keys: tuple[str, ...]
    if kind == "Notification":
        keys = NOTIFICATION_KEYS
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        keys = SUBSCRIPTION_KEYS
    else:
        raise SnsError(f"unknown SNS message type {kind!r}")
    out = []
    for key in keys:
        if key in message:
            value = message[key]
            if not isinstance(value, str):
                raise SnsError(f"SNS field {key} is not a string")
            out.append(f"{key}\n{value}\n")
        elif key != "Subject":
            raise SnsError(f"SNS message lacks {key}")
    return "".join(out).encode("utf-8")


class Verifier:
    """Checks SNS signatures against certificates fetched once and kept."""

    def __init__(self, fetch: CertFetcher = fetch_certificate) -> None:
        self.fetch = fetch
        self._certs: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def verify(self, message: Mapping[str, Any], topics: frozenset[str]) -> None:
        """Return quietly for a genuine message from an allowed topic, else raise SnsError."""
        topic = message.get("TopicArn")
        if topic not in topics:
            raise SnsError(f"topic {topic!r} is not in [bounces] sns_topics")
        version = str(message.get("SignatureVersion", ""))
        if version not in HASHES:
            raise SnsError(f"unsupported SignatureVersion {version!r}")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SnsError("Signature is not base64") from exc
        key = self._key(str(message.get("SigningCertURL", "")))
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), HASHES[version]())
        except InvalidSignature as exc:
            raise SnsError("bad signature") from exc

    def _key(self, url: str) -> rsa.RSAPublicKey:
        check_cert_url(url)
        with self._lock:
            if url not in self._certs:
                try:
                    cert = x509.load_pem_x509_certificate(self.fetch(url))
                except (OSError, ValueError) as exc:
                    raise SnsError(f"cannot load certificate {url}: {exc}") from exc
                key = cert.public_key()
                if not isinstance(key, rsa.RSAPublicKey):
                    raise SnsError(f"certificate {url} has no RSA key")
                self._certs[url] = key
            return self._certs[url]
