"""The SES transport: sesv2 send_email with raw content, one destination per call."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

from routemail import addresses, sestags
from routemail.author import author_of
from routemail.message import from_values
from routemail.transports import PERMANENT, SENT, TEMPORARY, Result, TransportError
from routemail.transports.wire import wire_form

if TYPE_CHECKING:
    from routemail.config import Ses

log = logging.getLogger(__name__)

# SES tag names and values: ASCII letters, digits, "_" and "-", at most 256.

# Refused for our sending rate: wait and try again.
THROTTLING = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}
)
# Nothing will go out until a person acts (resume sending, fix the domain or
# the configuration set, the credentials): keep the mail, stop trying this run.
ACCOUNT_PROBLEMS = frozenset(
    {
        "AccountSuspendedException",
        "AccountSendingPausedException",
        "SendingPausedException",
        "ConfigurationSetSendingPausedException",
        "ConfigurationSetDoesNotExistException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
# This copy or this recipient is refused for good.
REFUSED = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})


def tag_value(value: str) -> str:
    """A value SES accepts as a message tag, reversibly (routemail.sestags)."""
    return sestags.encode(value)


class SesTransport:
    """Sends each copy with one sesv2 send_email call; botocore's own retries are off
    so that pacing owns every retry and its timing."""

    def __init__(self, settings: Ses, session: boto3.session.Session | None = None) -> None:
        """session: one to share with the other senders' clients, which are made one at
        a time (routemail.transports.parallel): a boto3 session is not safe to use from
        several threads at once, its clients are; sharing it saves loading SES's API
        model again for each client."""
        self.settings = settings
        self._config = botocore.config.Config(
            region_name=settings.region,
            retries={"total_max_attempts": 1},
            connect_timeout=settings.timeout,
            read_timeout=settings.timeout,
        )
        self.session = session or boto3.session.Session()
        try:
            self.client: Any = self.session.client(
                "sesv2", endpoint_url=settings.endpoint_url, config=self._config
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise TransportError(
                f"delivery.ses: cannot set up SES for region {settings.region!r}, endpoint "
                f"{settings.endpoint_url or '(default)'}: {exc}; check region and endpoint_url"
            ) from exc

    def max_send_rate(self) -> float | None:
        """The account's maximum send rate (SES v1 get_send_quota), or None if unreadable."""
        v1: Any = self.session.client(
            "ses", endpoint_url=self.settings.endpoint_url, config=self._config
        )
        try:
            rate = float(v1.get_send_quota()["MaxSendRate"])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            log.warning("cannot read the SES sending quota (%s); sending at 1 message/s", exc)
            return None
        finally:
            v1.close()
        return rate if rate > 0 else None

    def send(self, sender: str, recipient: str, message: bytes, tags: Mapping[str, str]) -> Result:
        # SES takes only ASCII addresses: a UTF-8 domain goes as its A-label, a UTF-8
        # local part cannot go at all (SES has no SMTPUTF8).
        destination = addresses.ascii_domain(recipient)
        if not destination.isascii():
            return Result(
                PERMANENT,
                f"ses: cannot send to {recipient}: SES takes no UTF-8 local part (it has no"
                " SMTPUTF8); send through an SMTP relay that offers SMTPUTF8",
            )
        request: dict[str, Any] = {
            "Destination": {"ToAddresses": [destination]},
            "Content": {"Raw": {"Data": wire_form(message)}},
            "EmailTags": [
                {"Name": tag_value(name), "Value": tag_value(value)} for name, value in tags.items()
            ],
        }
        if self.settings.configuration_set:
            request["ConfigurationSetName"] = self.settings.configuration_set
        if sender:
            # SES's envelope sender is its own either way; this names the verified
            # identity. A notice (null sender) is sent from its From header's identity.
            request["FromEmailAddress"] = sender
        try:
            answer = self.client.send_email(**request)
        except botocore.exceptions.ClientError as exc:
            # A notice has no envelope sender: SES sends it as its From address.
            return self._refused(exc, sender or author_of(from_values(message)).address)
        except botocore.exceptions.NoCredentialsError as exc:
            return Result(
                TEMPORARY,
                f"ses: {exc}; give credentials through the environment, ~/.aws or an instance role",
                halt=True,
            )
        except botocore.exceptions.ParamValidationError as exc:
            return Result(PERMANENT, f"ses: {exc}")
        except botocore.exceptions.BotoCoreError as exc:
            # Unreachable endpoint, timeouts: a read timeout may hide a send
            # that went through, so a retry risks a duplicate, never a loss.
            return Result(TEMPORARY, f"ses: {exc}", halt=True)
        return Result(SENT, str(answer.get("MessageId", "")))

    def _refused(self, exc: botocore.exceptions.ClientError, identity: str | None) -> Result:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        text = str(error.get("Message", ""))
        detail = f"ses: {code}: {text}".rstrip(": ")
        if code in THROTTLING:
            # The daily quota does not come back within a run; the per-second rate does.
            daily = "daily" in text.lower() or "24 hour" in text.lower()
            return Result(TEMPORARY, detail, throttled=not daily, halt=daily)
        if code in ACCOUNT_PROBLEMS:
            return Result(TEMPORARY, detail, halt=True)
        if code == "MessageRejected" and identity and identity.lower() in text.lower():
            # Refused for our own sender (an unverified identity, no authority to
            # send from it): a person fixes the identity, the mail waits.
            return Result(TEMPORARY, detail + "; verify the sending domain in SES", halt=True)
        if code in REFUSED:
            return Result(PERMANENT, detail)
        # Anything unknown is retried: a later run, or the router's give-up
        # after max_attempts, settles it, and no copy is dropped on a guess.
        return Result(TEMPORARY, detail)

    def close(self) -> None:
        self.client.close()
