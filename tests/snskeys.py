"""A test signing key and certificate for SNS messages, and a signer using them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from routemail.sns import string_to_sign

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:routemail-ses-events"


@cache
def key_and_cert() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    return key, certificate_valid(now - dt.timedelta(days=1), now + dt.timedelta(days=30), key)


def certificate_valid(
    not_before: dt.datetime, not_after: dt.datetime, key: rsa.RSAPrivateKey | None = None
) -> bytes:
    """A certificate for the test key (PEM) valid only from not_before to not_after."""
    key = key or key_and_cert()[0]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate() -> bytes:
    return key_and_cert()[1]


def signed(
    message: dict[str, Any] | str,
    *,
    kind: str = "Notification",
    version: str = "2",
    topic: str = TOPIC,
    cert_url: str = CERT_URL,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """An SNS HTTP delivery body, signed with the test key."""
    body = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        **(extra or {}),
    }
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key_and_cert()[0].sign(string_to_sign(body), padding.PKCS1v15(), algorithm)
    body["Signature"] = base64.b64encode(signature).decode("ascii")
    return body
