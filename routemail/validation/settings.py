"""Validation of the site-wide sections of lists.toml: [site], [receiver],
[delivery], [moderation], [retention], [api], [webhooks], [bounces] and [monitoring]."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from routemail import addresses
from routemail.config import (
    DEFAULT_MAX_SIZE,
    MAX_SENDERS,
    TRANSPORTS,
    VERDICT_NAMES,
    VERDICT_VALUES,
    WEBHOOK_EVENTS,
    Api,
    Bounces,
    Delivery,
    Moderation,
    Monitoring,
    Receiver,
    Retention,
    Ses,
    SesInbound,
    Site,
    Smtp,
    Webhooks,
)
from routemail.validation.checker import Checker, either, positive

S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
SNS_TOPIC = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")


def site(v: Checker, t: dict[str, Any]) -> Site | None:
    v.unknown_keys(t, "site", {"domain", "admin", "base_url", "name"})
    for required in ("domain", "admin"):
        if required not in t:
            v.problem("site", f"missing key site.{required}")
    domain = v.get(t, "domain", "site", str, "")
    if domain and addresses.normalize(f"x@{domain}") is None:
        v.problem("site.domain", f"{domain!r} is not a domain name")
    admin = v.get(t, "admin", "site", str, "")
    admin = v.address(admin, "site.admin") if admin else ""
    base_url = v.get(
        t,
        "base_url",
        "site",
        str,
        f"https://{domain}",
        lambda x: None if x.startswith(("https://", "http://")) else "expected an http(s) URL",
    )
    name = v.get(t, "name", "site", str, domain)
    if not domain or not admin:
        return None
    return Site(domain.lower(), admin, base_url.rstrip("/"), name)


def receiver(v: Checker, t: dict[str, Any]) -> Receiver:
    v.unknown_keys(
        t, "receiver", {"on_receipt", "max_size", "secret_file", "trusted_proxies", "ses_inbound"}
    )
    return Receiver(
        on_receipt=v.get(t, "on_receipt", "receiver", str, "run", v.choice(("run", "none"))),
        max_size=v.get(
            t,
            "max_size",
            "receiver",
            int,
            DEFAULT_MAX_SIZE,
            lambda x: None if x > 0 else "expected a positive number of bytes",
        ),
        secret_file=v.get(t, "secret_file", "receiver", str, None),
        trusted_proxies=v.get(
            t,
            "trusted_proxies",
            "receiver",
            int,
            0,
            lambda x: None if x >= 0 else "expected 0 or more proxies",
        ),
        ses_inbound=ses_inbound(v, v.table(t, "ses_inbound", "receiver.")),
    )


def ses_inbound(v: Checker, t: dict[str, Any]) -> SesInbound:
    p = "receiver.ses_inbound"
    keys = {"sns_topics", "sns_max_age_hours", "bucket", "prefix", "region", "endpoint_url"}
    v.unknown_keys(t, p, {*keys, "timeout"})
    bucket = v.get(
        t,
        "bucket",
        p,
        str,
        None,
        lambda x: None if S3_BUCKET.fullmatch(x) else "expected an S3 bucket name",
    )
    prefix = v.get(
        t,
        "prefix",
        p,
        str,
        "",
        lambda x: "the S3 action's object key prefix never starts with /" if x[:1] == "/" else None,
    )
    if "prefix" in t and bucket is None:
        v.problem(f"{p}.prefix", "needs bucket, the S3 action's bucket the prefix is in")
    endpoint_url = v.get(
        t,
        "endpoint_url",
        p,
        str,
        None,
        lambda x: None if x.startswith(("https://", "http://")) else "expected an http(s) URL",
    )
    return SesInbound(
        sns_topics=sns_topics(v, t, p),
        sns_max_age_hours=float(v.get(t, "sns_max_age_hours", p, (int, float), 1.0, positive)),
        bucket=bucket,
        prefix=prefix,
        region=v.get(t, "region", p, str, None),
        endpoint_url=endpoint_url,
        timeout=float(v.get(t, "timeout", p, (int, float), 5.0, positive)),
    )


def sns_topics(v: Checker, t: dict[str, Any], prefix: str) -> frozenset[str]:
    """The table's sns_topics: SNS topic ARNs."""
    topics = v.get(t, "sns_topics", prefix, list, [])
    for topic in topics:
        if not (isinstance(topic, str) and SNS_TOPIC.fullmatch(topic)):
            v.problem(
                f"{prefix}.sns_topics",
                f"{topic!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
            )
    return frozenset(x for x in topics if isinstance(x, str))


def senders(what: str, auto: bool = False) -> Callable[[Any], str | None]:
    """The check of a number of parallel senders: 1 to MAX_SENDERS (or "auto")."""
    expected = f"expected 1 to {MAX_SENDERS} {what}" + (' or "auto"' if auto else "")

    def check(value: Any) -> str | None:
        if isinstance(value, int) and 1 <= value <= MAX_SENDERS:
            return None
        return None if auto and value == "auto" else f"{expected}, got {value!r}"

    return check


def delivery(v: Checker, t: dict[str, Any]) -> Delivery:
    v.unknown_keys(
        t,
        "delivery",
        {
            "transport",
            "rate",
            "max_attempts",
            "max_age_hours",
            "retries",
            "backoff_seconds",
            "max_backoff_seconds",
            "smtp",
            "ses",
        },
    )
    transport = v.get(t, "transport", "delivery", str, "outbox", v.choice(TRANSPORTS))
    rate = v.get(
        t,
        "rate",
        "delivery",
        (int, float, str),
        14.0,
        lambda x: (
            None
            if (x == "auto" if isinstance(x, str) else x > 0)
            else 'expected messages per second or "auto"'
        ),
    )
    if rate == "auto" and transport != "ses":
        v.problem(
            "delivery.rate",
            '"auto" reads the SES sending quota; with this transport give messages per second',
        )
    smtp_t = v.table(t, "smtp", "delivery.")
    v.unknown_keys(
        smtp_t,
        "delivery.smtp",
        {"host", "port", "tls", "username", "password_env", "timeout", "ca_file", "connections"},
    )
    p = "delivery.smtp"
    tls = v.get(smtp_t, "tls", p, str, "starttls", v.choice(("starttls", "implicit", "none")))
    port_check = lambda x: None if 0 < x < 65536 else "expected a port, 1 to 65535"  # noqa: E731
    smtp = Smtp(
        host=v.get(smtp_t, "host", p, str, "localhost"),
        port=v.get(smtp_t, "port", p, int, 465 if tls == "implicit" else 25, port_check),
        tls=tls,
        username=v.get(smtp_t, "username", p, str, None),
        password_env=v.get(smtp_t, "password_env", p, str, None),
        timeout=float(v.get(smtp_t, "timeout", p, (int, float), 30.0, positive)),
        ca_file=v.get(smtp_t, "ca_file", p, str, None),
        connections=v.get(smtp_t, "connections", p, int, 4, senders("connections")),
    )
    if smtp.username and not smtp.password_env:
        v.problem(
            "delivery.smtp.username",
            "needs password_env, the name of the environment variable holding the password",
        )
    ses_t = v.table(t, "ses", "delivery.")
    v.unknown_keys(
        ses_t,
        "delivery.ses",
        {"region", "configuration_set", "endpoint_url", "timeout", "concurrency"},
    )
    ses = Ses(
        region=v.get(ses_t, "region", "delivery.ses", str, "us-east-1"),
        configuration_set=v.get(ses_t, "configuration_set", "delivery.ses", str, None),
        endpoint_url=v.get(ses_t, "endpoint_url", "delivery.ses", str, None),
        timeout=float(v.get(ses_t, "timeout", "delivery.ses", (int, float), 30.0, positive)),
        concurrency=v.get(
            ses_t,
            "concurrency",
            "delivery.ses",
            (int, float, str),
            "auto",
            senders("calls", auto=True),
        ),
    )
    non_negative = lambda x: None if x >= 0 else "expected 0 or more"  # noqa: E731
    return Delivery(
        transport=transport,
        rate=rate if isinstance(rate, str) else float(rate),
        max_attempts=v.get(t, "max_attempts", "delivery", int, 8, positive),
        max_age_hours=float(v.get(t, "max_age_hours", "delivery", (int, float), 72.0, positive)),
        retries=v.get(t, "retries", "delivery", int, 3, non_negative),
        backoff_seconds=float(v.get(t, "backoff_seconds", "delivery", (int, float), 1.0, positive)),
        max_backoff_seconds=float(
            v.get(t, "max_backoff_seconds", "delivery", (int, float), 30.0, positive)
        ),
        smtp=smtp,
        ses=ses,
    )


def moderation(v: Checker, t: dict[str, Any]) -> Moderation:
    v.unknown_keys(t, "moderation", {"pass", "hold_days"})
    passing = {n: frozenset({"PASS"}) for n in VERDICT_NAMES}
    pass_t = v.table(t, "pass", "moderation.")
    v.unknown_keys(pass_t, "moderation.pass", set(VERDICT_NAMES))
    for name in VERDICT_NAMES:
        values = v.get(pass_t, name, "moderation.pass", list, ["PASS"])
        bad = [v for v in values if v not in VERDICT_VALUES]
        if bad:
            v.problem(
                f"moderation.pass.{name}",
                f"{bad[0]!r} is not a verdict; expected {either(sorted(VERDICT_VALUES))}",
            )
        else:
            passing[name] = frozenset(values)
    if "FAIL" in passing["virus"]:
        v.problem("moderation.pass.virus", "a virus FAIL can never pass")
        passing["virus"] = frozenset({"PASS"})
    hold_days = v.get(
        t,
        "hold_days",
        "moderation",
        (int, float),
        14.0,
        lambda x: None if x > 0 else "expected a positive number of days",
    )
    return Moderation(passing, float(hold_days))


def retention(v: Checker, t: dict[str, Any]) -> Retention:
    v.unknown_keys(t, "retention", {"retention_days", "archive"})
    days = v.get(
        t,
        "retention_days",
        "retention",
        (int, float),
        30.0,
        lambda x: None if x > 0 else "expected a positive number of days",
    )
    return Retention(float(days), v.get(t, "archive", "retention", bool, True))


def api(v: Checker, t: dict[str, Any]) -> Api:
    names = ("token_hours", "account_hours", "mail_interval_seconds", "window_seconds")
    ints = ("mails_per_client", "guess_limit", "max_request_bytes")
    v.unknown_keys(t, "api", {*names, *ints, "send_key_env"})
    values: dict[str, Any] = {}
    for key in names:
        default = getattr(Api, key)
        values[key] = float(v.get(t, key, "api", (int, float), default, positive))
    for key in ints:
        values[key] = v.get(t, key, "api", int, getattr(Api, key), positive)
    values["send_key_env"] = v.get(t, "send_key_env", "api", str, Api.send_key_env)
    return Api(**values)


def webhooks(v: Checker, t: dict[str, Any]) -> Webhooks:
    p = "webhooks"
    v.unknown_keys(t, p, {"urls", "secret_env", "events", "max_age_hours", "first_retry_seconds"})
    urls = v.get(t, "urls", p, list, [])
    for url in urls:
        if not (isinstance(url, str) and url.startswith(("https://", "http://"))):
            v.problem(f"{p}.urls", f"{url!r} is not an http(s) URL")
    events = v.get(t, "events", p, list, list(WEBHOOK_EVENTS))
    for event in events:
        if event not in WEBHOOK_EVENTS:
            v.problem(f"{p}.events", f"unknown event {event!r}; expected {either(WEBHOOK_EVENTS)}")
    return Webhooks(
        urls=tuple(u for u in urls if isinstance(u, str)),
        secret_env=v.get(t, "secret_env", p, str, "ROUTEMAIL_WEBHOOK_SECRET"),
        events=frozenset(e for e in events if e in WEBHOOK_EVENTS),
        max_age_hours=float(v.get(t, "max_age_hours", p, (int, float), 24.0)),
        first_retry_seconds=float(v.get(t, "first_retry_seconds", p, (int, float), 30.0)),
    )


def bounces(v: Checker, t: dict[str, Any]) -> Bounces:
    p = "bounces"
    v.unknown_keys(t, p, {"threshold", "decay_days", "sns_topics", "sns_max_age_hours"})
    return Bounces(
        threshold=v.get(t, "threshold", p, int, 5, positive),
        decay_days=float(v.get(t, "decay_days", p, (int, float), 7.0, positive)),
        sns_topics=sns_topics(v, t, p),
        sns_max_age_hours=float(v.get(t, "sns_max_age_hours", p, (int, float), 1.0, positive)),
    )


def monitoring(v: Checker, t: dict[str, Any]) -> Monitoring:
    keys = ("pending_alert_minutes", "delivery_alert_minutes")
    v.unknown_keys(t, "monitoring", set(keys))
    values = {
        key: float(v.get(t, key, "monitoring", (int, float), getattr(Monitoring, key), positive))
        for key in keys
    }
    return Monitoring(**values)
