"""Amazon SNS message signatures: verify before believing anything in a message.

The signing certificate is fetched only from an https URL whose host is
sns.<region>.amazonaws.com[.cn] and whose path ends in .pem, and only for a
message that could verify; each URL is fetched once (a failed fetch is not
retried for a while) and at most CERT_CACHE_SIZE are kept. A certificate is
believed only within its validity period, checked at every use, so one kept
in the cache stops verifying when it expires. Signature version
1 is SHA1withRSA, version 2 SHA256withRSA. A genuine message is still a
replay when its signed Timestamp is older than the site allows (check_fresh).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import threading
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
MAX_SIGNATURE_BYTES = 1024  # an RSA-8192 signature; SNS uses 2048-bit keys
CERT_CACHE_SIZE = 32  # SNS signs with one certificate per region at a time
FAILED_FETCH_SECONDS = 600.0  # a certificate URL that failed is not fetched again for this long
FUTURE_SKEW_SECONDS = 300.0  # a Timestamp this far ahead of our clock is still believed

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


def timestamp(message: Mapping[str, Any]) -> float:
    """The message's signed Timestamp (ISO 8601, UTC) as unix seconds."""
    value = message.get("Timestamp")
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise SnsError(f"Timestamp {str(value)[:40]!r} is not an ISO 8601 time")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def check_fresh(
    message: Mapping[str, Any],
    max_age: float,
    now: float,
    setting: str = "[bounces] sns_max_age_hours",
) -> float:
    """The Timestamp of a message that is at most max_age seconds old; SnsError for an
    older one (a replay: SNS retries for an hour at most) or one from the future.
    setting names where max_age is configured, for the error."""
    sent = timestamp(message)
    if sent < now - max_age:
        raise SnsError(
            f"sent at {message.get('Timestamp')}, older than {setting}"
            f" ({max_age / 3600:g} h): refused as a replay"
        )
    if sent > now + FUTURE_SKEW_SECONDS:
        raise SnsError(f"Timestamp {message.get('Timestamp')} is in the future")
    return sent


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


@dataclass(frozen=True)
class _Cert:
    """A certificate's key and the period it may be believed in (unix seconds)."""

    url: str
    key: rsa.RSAPublicKey
    not_before: float
    not_after: float

    def usable_key(self, now: float) -> rsa.RSAPublicKey:
        if now > self.not_after:
            raise SnsError(f"certificate {self.url} expired at {_utc(self.not_after)}")
        if now < self.not_before:
            raise SnsError(f"certificate {self.url} is not valid before {_utc(self.not_before)}")
        return self.key


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Failed:
    """A certificate URL that could not be used, and until when it is not tried again."""

    reason: str
    until: float


class Verifier:
    """Checks SNS signatures against certificates fetched once per URL and kept."""

    def __init__(
        self,
        fetch: CertFetcher = fetch_certificate,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.fetch = fetch
        self.clock = clock  # for how long a failed fetch is remembered
        self.wall_clock = wall_clock  # for certificates' validity periods
        self._certs: OrderedDict[str, _Cert | _Failed] = OrderedDict()
        self._lock = threading.Lock()

    def verify(
        self,
        message: Mapping[str, Any],
        topics: frozenset[str],
        setting: str = "[bounces] sns_topics",
    ) -> None:
        """Return quietly for a genuine message from an allowed topic, else raise SnsError.
        Everything that can be checked without the certificate is checked first; setting
        names where the allowed topics are configured, for the error."""
        topic = message.get("TopicArn")
        if topic not in topics:
            raise SnsError(f"topic {topic!r} is not in {setting}")
        version = str(message.get("SignatureVersion", ""))
        if version not in HASHES:
            raise SnsError(f"unsupported SignatureVersion {version!r}")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SnsError("Signature is not base64") from exc
        if not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
            raise SnsError("the message is not signed")
        signed = string_to_sign(message)
        key = self._key(str(message.get("SigningCertURL", "")))
        try:
            key.verify(signature, signed, padding.PKCS1v15(), HASHES[version]())
        except InvalidSignature as exc:
            raise SnsError("bad signature") from exc

    def _key(self, url: str) -> rsa.RSAPublicKey:
        check_cert_url(url)
        with self._lock:
            cached = self._certs.get(url)
            if isinstance(cached, _Failed) and cached.until <= self.clock():
                cached = None
            if cached is None:
                cached = self._load(url)
                self._certs[url] = cached
                while len(self._certs) > CERT_CACHE_SIZE:
                    self._certs.popitem(last=False)
            self._certs.move_to_end(url)
        if isinstance(cached, _Failed):
            raise SnsError(cached.reason)
        return cached.usable_key(self.wall_clock())

    def _load(self, url: str) -> _Cert | _Failed:
        try:
            cert = x509.load_pem_x509_certificate(self.fetch(url))
        except Exception as exc:  # whatever went wrong, this URL gives no key for a while
            return _Failed(
                f"cannot load certificate {url}: {exc}", self.clock() + FAILED_FETCH_SECONDS
            )
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return _Failed(f"certificate {url} has no RSA key", self.clock() + FAILED_FETCH_SECONDS)
        return _Cert(
            url,
            key,
            cert.not_valid_before_utc.timestamp(),
            cert.not_valid_after_utc.timestamp(),
        )
