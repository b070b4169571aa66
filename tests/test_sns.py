"""SNS signature verification: genuine messages pass, anything else is refused."""

from __future__ import annotations

import time

import pytest

from routemail.sns import (
    CERT_CACHE_SIZE,
    FAILED_FETCH_SECONDS,
    FUTURE_SKEW_SECONDS,
    SnsError,
    Verifier,
    check_cert_url,
    check_fresh,
    timestamp,
)
from tests import snskeys

TOPICS = frozenset({snskeys.TOPIC})


class Checker:
    """A Verifier whose certificate fetches are counted and answered with the test cert
    (a URL with "gone" in it fails), on a clock the test moves."""

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.now = 1000.0
        self.wall = time.time()
        self.verifier = Verifier(self.fetch, clock=lambda: self.now, wall_clock=lambda: self.wall)

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if "gone" in url:
            raise OSError("HTTP Error 404: Not Found")
        return snskeys.certificate()

    def verify_allowed(self, body: dict[str, str]) -> None:
        self.verifier.verify(body, TOPICS)


def verifier() -> Checker:
    return Checker()


@pytest.mark.parametrize("version", ["1", "2"])
def test_genuine_message_verifies(version: str) -> None:
    """Messages signed with either signature version verify, and the certificate is
    fetched once however many messages use it."""
    v = verifier()
    for _ in range(3):
        v.verify_allowed(snskeys.signed({"notificationType": "Bounce"}, version=version))
    assert v.fetched == [snskeys.CERT_URL]


def test_subscription_confirmation_verifies() -> None:
    """A SubscriptionConfirmation is signed over its own field list."""
    body = snskeys.signed(
        "You have chosen to subscribe",
        kind="SubscriptionConfirmation",
        extra={"SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Confirm", "Token": "t"},
    )
    verifier().verify_allowed(body)


def test_tampered_message_fails() -> None:
    """Changing the message after signing breaks the signature."""
    body = snskeys.signed({"notificationType": "Bounce"})
    body["Message"] = body["Message"].replace("Bounce", "Complaint")
    with pytest.raises(SnsError, match="bad signature"):
        verifier().verify_allowed(body)


def test_wrong_topic_fails() -> None:
    """A correctly signed message from a topic that is not allowed is refused."""
    body = snskeys.signed({}, topic="arn:aws:sns:us-east-1:999999999999:other")
    with pytest.raises(SnsError, match=r"not in \[bounces\] sns_topics"):
        verifier().verify_allowed(body)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
        "https://xsns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
    ],
)
def test_foreign_certificate_host_is_never_fetched(url: str) -> None:
    """Certificate URLs off the SNS host pattern are refused before any fetch."""
    v = verifier()
    with pytest.raises(SnsError, match="certificate URL"):
        v.verify_allowed(snskeys.signed({}, cert_url=url))
    assert v.fetched == []


def test_china_region_host_is_allowed() -> None:
    """The .amazonaws.com.cn SNS hosts pass the host rule."""
    check_cert_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem")


def test_unknown_signature_version_fails() -> None:
    """Only signature versions 1 and 2 exist."""
    body = snskeys.signed({})
    body["SignatureVersion"] = "3"
    with pytest.raises(SnsError, match="SignatureVersion"):
        verifier().verify_allowed(body)


def test_failed_certificate_fetch_is_not_retried_at_once() -> None:
    """A certificate URL that failed is not fetched again until FAILED_FETCH_SECONDS pass."""
    v = verifier()
    url = "https://sns.us-east-1.amazonaws.com/gone.pem"
    for _ in range(50):
        with pytest.raises(SnsError, match="cannot load certificate"):
            v.verify_allowed(snskeys.signed({}, cert_url=url))
    assert v.fetched == [url]
    v.now += FAILED_FETCH_SECONDS
    with pytest.raises(SnsError, match="cannot load certificate"):
        v.verify_allowed(snskeys.signed({}, cert_url=url))
    assert v.fetched == [url, url]


def test_certificate_cache_is_bounded() -> None:
    """However many certificate URLs messages name, at most CERT_CACHE_SIZE are kept,
    the least recently used going first."""
    v = verifier()
    urls = [f"https://sns.us-east-1.amazonaws.com/c{n}.pem" for n in range(CERT_CACHE_SIZE + 5)]
    for url in urls:
        v.verify_allowed(snskeys.signed({}, cert_url=url))
    assert len(v.verifier._certs) == CERT_CACHE_SIZE
    v.verify_allowed(snskeys.signed({}, cert_url=urls[-1]))
    v.verify_allowed(snskeys.signed({}, cert_url=urls[0]))
    assert v.fetched == [*urls, urls[0]]


@pytest.mark.parametrize("signature", ["", "AAAA" * 400])
def test_unsigned_or_oversized_signature_fetches_nothing(signature: str) -> None:
    """A missing or absurdly long Signature is refused before the certificate is fetched."""
    v = verifier()
    body = snskeys.signed({})
    body["Signature"] = signature
    with pytest.raises(SnsError, match="not signed"):
        v.verify_allowed(body)
    assert v.fetched == []


def test_freshness() -> None:
    """check_fresh accepts up to max_age old and FUTURE_SKEW_SECONDS ahead, no more."""
    now = timestamp({"Timestamp": "2026-12-02T12:00:00.000Z"})
    at = lambda seconds: {"Timestamp": f"2026-12-02T12:00:{seconds:02d}.000Z"}  # noqa: E731
    assert check_fresh(at(0), 3600, now + 3600) == now
    with pytest.raises(SnsError, match="replay"):
        check_fresh(at(0), 3600, now + 3601)
    check_fresh(at(0), 3600, now - FUTURE_SKEW_SECONDS)
    with pytest.raises(SnsError, match="future"):
        check_fresh(at(1), 3600, now - FUTURE_SKEW_SECONDS)
    for bad in ("yesterday", 17, None, "2026-13-45T00:00:00Z"):
        with pytest.raises(SnsError, match="not an ISO 8601 time"):
            check_fresh({"Timestamp": bad}, 3600, now)


def test_cached_certificate_stops_verifying_when_it_expires() -> None:
    """The test certificate is valid for 30 days: a message verifies today, and the
    same certificate, kept in the cache, refuses one 31 days on."""
    v = verifier()
    v.verify_allowed(snskeys.signed({"notificationType": "Bounce"}))
    v.wall += 31 * 86400
    with pytest.raises(SnsError, match=r"certificate .* expired at"):
        v.verify_allowed(snskeys.signed({"notificationType": "Bounce"}))
    assert v.fetched == [snskeys.CERT_URL]
