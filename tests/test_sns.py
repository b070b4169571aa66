"""SNS signature verification: genuine messages pass, anything else is refused."""

from __future__ import annotations

import pytest

from routemail.sns import SnsError, Verifier, check_cert_url
from tests import snskeys

TOPICS = frozenset({snskeys.TOPIC})


class Checker:
    """A Verifier whose certificate fetches are counted and answered with the test cert."""

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.verifier = Verifier(self.fetch)

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
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
