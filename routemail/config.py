"""lists.toml: the typed settings, and loading them.

Every key is documented in docs/configuration.md. Validation (routemail.validation)
collects every problem before failing, so `routemail check` reports them all at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routemail.errors import ConfigError, Problem

VERDICT_NAMES = ("dkim", "dmarc", "spf", "spam", "virus")
VERDICT_VALUES = frozenset({"PASS", "FAIL", "GRAY", "PROCESSING_FAILED", "DISABLED"})
TRANSPORTS = ("outbox", "smtp", "ses")
RESOLVERS = ("sqlite", "command", "http")
REPLY_TO = ("author", "list", "both")
POSTER_POLICIES = ("members", "moderators", "anyone")
LIST_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
DEFAULT_MAX_SIZE = 40 * 1024 * 1024  # the SES inbound maximum
MAX_SENDERS = 64  # the most SMTP connections or SES calls in flight one run may use


@dataclass(frozen=True)
class Site:
    domain: str
    admin: str
    base_url: str
    name: str


@dataclass(frozen=True)
class SesInbound:
    """[receiver.ses_inbound]: SES receipt notifications over SNS, at POST /ses-inbound."""

    sns_topics: frozenset[str] = frozenset()  # the receipt rules' topics; none: all refused
    sns_max_age_hours: float = 1.0  # older notifications are refused as replays
    bucket: str | None = None  # the S3 action's bucket; None: only inline mail is taken
    prefix: str = ""  # the S3 action's object key prefix
    region: str | None = None  # the bucket's region; None: boto3's own (AWS_DEFAULT_REGION, ...)
    endpoint_url: str | None = None  # another S3 endpoint (an S3-compatible store, tests)
    timeout: float = 5.0  # per S3 connect and read; SNS gives up on an answer after 15 s


@dataclass(frozen=True)
class Receiver:
    on_receipt: str = "run"
    max_size: int = DEFAULT_MAX_SIZE
    secret_file: str | None = None
    trusted_proxies: int = 0
    ses_inbound: SesInbound = field(default_factory=SesInbound)


@dataclass(frozen=True)
class Smtp:
    host: str = "localhost"
    port: int = 25
    tls: str = "starttls"  # starttls | implicit | none
    username: str | None = None
    password_env: str | None = None
    timeout: float = 30.0
    ca_file: str | None = None  # trust this CA bundle instead of the system's
    connections: int = 4  # SMTP sessions sending at once


@dataclass(frozen=True)
class Ses:
    region: str = "us-east-1"
    configuration_set: str | None = None
    endpoint_url: str | None = None
    timeout: float = 30.0
    concurrency: int | str = "auto"  # SendEmail calls in flight, or "auto" (rate times latency)


@dataclass(frozen=True)
class Delivery:
    transport: str = "outbox"
    rate: float | str = 14.0  # messages per second, or "auto"
    max_attempts: int = 8
    max_age_hours: float = 72.0
    retries: int = 3  # in-run retries of a temporary failure
    backoff_seconds: float = 1.0  # first in-run retry waits about this long
    max_backoff_seconds: float = 30.0
    smtp: Smtp = field(default_factory=Smtp)
    ses: Ses = field(default_factory=Ses)


@dataclass(frozen=True)
class Moderation:
    passing: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: {n: frozenset({"PASS"}) for n in VERDICT_NAMES}
    )
    hold_days: float = 14.0


@dataclass(frozen=True)
class Retention:
    retention_days: float = 30.0
    archive: bool = True


@dataclass(frozen=True)
class Api:
    token_hours: float = 48.0  # emailed tokens and pending subscriptions expire
    account_hours: float = 48.0  # unverified moderator accounts expire
    mail_interval_seconds: float = 600.0  # at most one confirmation mail per address
    mails_per_client: int = 30  # confirmation mails one client may cause per window
    guess_limit: int = 10  # failed token or password attempts per address, and per client
    window_seconds: float = 3600.0  # the period of mails_per_client and guess_limit
    max_request_bytes: int = 256 * 1024
    send_key_env: str = "ROUTEMAIL_SEND_KEY"  # names the variable holding the /send API key


# docs/deliverability.md describes each event and its JSON.
WEBHOOK_EVENTS = (
    # a message
    "received",
    "held",
    "approved",
    "rejected",
    "expired",
    "forwarded",
    "finished",
    # one recipient's copy
    "sent",
    "deferred",
    "gave_up",
    "suppressed",
    "delivered",
    "bounced",
    "complained",
    # an address
    "unsubscribed",
)


@dataclass(frozen=True)
class Webhooks:
    urls: tuple[str, ...] = ()
    secret_env: str = "ROUTEMAIL_WEBHOOK_SECRET"
    events: frozenset[str] = frozenset(WEBHOOK_EVENTS)
    max_age_hours: float = 24.0
    first_retry_seconds: float = 30.0


@dataclass(frozen=True)
class Bounces:
    threshold: int = 5  # transient-bounce score that disables delivery
    decay_days: float = 7.0  # a score untouched this long starts again from zero
    sns_topics: frozenset[str] = frozenset()  # SNS topic ARNs /ses-events accepts
    sns_max_age_hours: float = 1.0  # older notifications are refused as replays


@dataclass(frozen=True)
class Monitoring:
    pending_alert_minutes: float = 60.0  # /healthz and status flag pending mail older than this
    delivery_alert_minutes: float = 60.0  # the admin is mailed when delivery fails this long


@dataclass(frozen=True)
class MailingList:
    name: str
    description: str = ""
    members: tuple[str, ...] = ()
    moderators: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    posters: str | tuple[str, ...] = "members"
    subject_prefix: str = ""
    header: str = ""
    footer: str = ""
    reply_to: str = "author"
    archive: bool = True
    dynamic: bool = False


@dataclass(frozen=True)
class DynamicRule:
    pattern: re.Pattern[str]
    resolver: str
    description: str = ""
    posters: str | tuple[str, ...] = "anyone"
    moderators: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    index: int = 0


@dataclass(frozen=True)
class Config:
    path: Path
    site: Site
    receiver: Receiver
    delivery: Delivery
    moderation: Moderation
    retention: Retention
    lists: Mapping[str, MailingList]
    dynamic: tuple[DynamicRule, ...]
    raw: Mapping[str, Any]
    api: Api = field(default_factory=Api)
    webhooks: Webhooks = field(default_factory=Webhooks)
    bounces: Bounces = field(default_factory=Bounces)
    monitoring: Monitoring = field(default_factory=Monitoring)

    @property
    def base_dir(self) -> Path:
        """Relative paths in the file are relative to the file itself."""
        return self.path.parent

    def resolve_path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


def default_path() -> Path:
    return Path(os.environ.get("ROUTEMAIL_CONFIG", "lists.toml"))


def load(path: Path | str | None = None, resources: bool = False) -> Config:
    """Read and validate lists.toml; ConfigError lists every problem found."""
    path = Path(path) if path is not None else default_path()
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            Problem(
                str(path),
                None,
                "",
                "no such file; set ROUTEMAIL_CONFIG or run from the directory holding lists.toml",
            )
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(str(path), None, "", f"cannot read: {exc}")) from exc
    return parse(text, path, resources)


def parse(text: str, path: Path, resources: bool = False) -> Config:
    """Validate the text of lists.toml; resources also tries dynamic lists' databases
    and programs (what `routemail check` does)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line N, column M)"; lead with the line like every problem.
        where = re.search(r" \(at line (\d+), column (\d+)\)$", str(exc))
        if where is None:
            raise ConfigError(Problem(path.name, None, "", f"not valid TOML: {exc}")) from exc
        reason = str(exc)[: where.start()]
        raise ConfigError(
            Problem(path.name, int(where[1]), "", f"not valid TOML: {reason} (column {where[2]})")
        ) from exc
    from routemail.validation import validate

    config, problems = validate(data, text, path, resources)
    if config is None:
        raise ConfigError(problems)
    return config


# Addresses routemail answers itself (bounces, unsubscribes, approvals, its own mail).
RESERVED_SUFFIXES = ("-bounces", "-owner", "-unsubscribe", "-request", "-confirm")
RESERVED_NAMES = ("outgoing", "routemail", "no-reply", "postmaster", "mailer-daemon")


def reserved_name(name: str) -> str | None:
    """Why name cannot be a list, or None."""
    # Mail to x-bounces+token@ is a bounce for list x: a name that only adds a +detail
    # to a reserved address is that address too, and could never receive a post.
    if name.partition("+")[0].endswith(RESERVED_SUFFIXES):
        return (
            f"names ending in {', '.join(RESERVED_SUFFIXES)} (with or without a +detail)"
            " are routemail's own addresses"
        )
    if name.startswith(("approve+", "reject+")):
        return "approve+ and reject+ addresses carry moderators' decisions"
    if name in RESERVED_NAMES:
        return "routemail uses this address itself"
    return None
