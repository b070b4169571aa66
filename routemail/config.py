"""lists.toml: loading, validation with line numbers, and the typed settings.

Every key is documented in docs/configuration.md. Validation collects every
problem before failing, so `routemail check` reports them all at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routemail import addresses
from routemail.errors import ConfigError

VERDICT_NAMES = ("dkim", "dmarc", "spf", "spam", "virus")
VERDICT_VALUES = frozenset({"PASS", "FAIL", "GRAY", "PROCESSING_FAILED", "DISABLED"})
TRANSPORTS = ("outbox", "smtp", "ses")
RESOLVERS = ("sqlite", "command", "http")
REPLY_TO = ("author", "list", "both")
POSTER_POLICIES = ("members", "moderators", "anyone")
LIST_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
DEFAULT_MAX_SIZE = 40 * 1024 * 1024  # the SES inbound maximum


@dataclass(frozen=True)
class Site:
    domain: str
    admin: str
    base_url: str
    name: str


@dataclass(frozen=True)
class Receiver:
    on_receipt: str = "run"
    max_size: int = DEFAULT_MAX_SIZE
    secret_file: str | None = None
    trusted_proxies: int = 0


@dataclass(frozen=True)
class Smtp:
    host: str = "localhost"
    port: int = 25
    tls: str = "starttls"  # starttls | implicit | none
    username: str | None = None
    password_env: str | None = None
    timeout: float = 30.0
    ca_file: str | None = None  # trust this CA bundle instead of the system's


@dataclass(frozen=True)
class Ses:
    region: str = "us-east-1"
    configuration_set: str | None = None
    endpoint_url: str | None = None
    timeout: float = 30.0


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


WEBHOOK_EVENTS = (
    "received",
    "held",
    "approved",
    "delivered",
    "bounced",
    "complained",
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

    @property
    def base_dir(self) -> Path:
        """Relative paths in the file are relative to the file itself."""
        return self.path.parent

    def resolve_path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


def default_path() -> Path:
    return Path(os.environ.get("ROUTEMAIL_CONFIG", "lists.toml"))


def load(path: Path | str | None = None) -> Config:
    """Read and validate lists.toml; ConfigError lists every problem found."""
    path = Path(path) if path is not None else default_path()
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: no such file; set ROUTEMAIL_CONFIG or run from the directory "
            "holding lists.toml"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse(text, path)


def parse(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line N, column M)"; lead with the line like every problem.
        where = re.search(r" \(at line (\d+), column (\d+)\)$", str(exc))
        if where is None:
            raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
        reason = str(exc)[: where.start()]
        raise ConfigError(
            f"{path.name} line {where[1]}: not valid TOML: {reason} (column {where[2]})"
        ) from exc
    v = _Validator(text, path)
    config = v.config(data)
    if v.problems:
        raise ConfigError(v.problems)
    assert config is not None
    return config


# -- locating keys in the text, for messages that name a line ---------------

_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key path (arrays of tables as name[i]) → line number.

    Lines inside multi-line strings and arrays are skipped: a footer line
    such as "[volunteers] list" is text, not a table header.
    """
    lines: dict[str, int] = {}
    table = ""
    arrays: dict[str, int] = {}
    depth, quote = 0, ""
    # TOML lines end at \n only; str.splitlines would also split inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if depth or quote:
            depth, quote = _value_state(line, depth, quote)
        elif m := _TABLE.match(line):
            table = _table_name(_dotted(m.group(2)), m.group(1) == "[[", arrays)
            lines.setdefault(table, number)
        elif m := _KEY.match(line):
            parts = _dotted(m.group(1))
            for i in range(1, len(parts) + 1):
                key = ".".join(parts[:i])
                lines.setdefault(f"{table}.{key}" if table else key, number)
            depth, quote = _value_state(line[m.end() :], 0, "")
    return lines


def _dotted(name: str) -> list[str]:
    return [p.strip().strip("\"'") for p in name.split(".")]


def _table_name(parts: list[str], array: bool, arrays: dict[str, int]) -> str:
    """The header's path, each array of tables along it indexed by its latest entry."""
    name = ""
    for i, part in enumerate(parts):
        name = f"{name}.{part}" if name else part
        if array and i == len(parts) - 1:
            arrays[name] = arrays.get(name, -1) + 1
        if name in arrays:
            name = f"{name}[{arrays[name]}]"
    return name


def _value_state(text: str, depth: int, quote: str) -> tuple[int, str]:
    """Bracket depth and open multi-line string quote after a line of a value."""
    i = 0
    while i < len(text):
        if quote:
            if quote[0] == '"' and text[i] == "\\":
                i += 2
            elif text.startswith(quote, i):
                i += len(quote)
                quote = ""
            else:
                i += 1
            continue
        c = text[i]
        if c == "#":
            break
        if text.startswith(('"""', "'''"), i):
            quote = text[i : i + 3]
            i += 3
            continue
        if c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    # A one-line string cannot continue on the next line.
    return depth, quote if len(quote) == 3 else ""


class _Validator:
    """Builds the typed Config, collecting problems as 'FILE line N: key: what'."""

    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.lines = _key_lines(text)
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        probe = key
        line = self.lines.get(probe)
        while line is None and "." in probe:
            probe = probe.rsplit(".", 1)[0]
            line = self.lines.get(probe)
        where = f"{self.path.name} line {line}" if line else self.path.name
        self.problems.append(f"{where}: {key}: {message}")

    def unknown_keys(self, table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                close = ", ".join(sorted(allowed))
                where = f"{prefix}.{key}" if prefix else key
                self.problem(where, f"unknown key; expected one of {close}")

    def table(self, data: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem(f"{prefix}{key}", "expected a table")
            return {}
        return value

    def get(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        kind: type | tuple[type, ...],
        default: Any,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        if key not in table:
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are not numbers, though Python's bool is an int.
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            names = " or ".join(_type_name(k) for k in kinds)
            self.problem(f"{prefix}.{key}", f"expected {names}, got {value!r}")
            return default
        if check and (message := check(value)):
            self.problem(f"{prefix}.{key}", message)
            return default
        return value

    def address(self, value: Any, key: str) -> str | None:
        norm = normalize_address(value)
        if norm is None:
            self.problem(key, f"{value!r} is not an email address")
        return norm

    def addresses(self, table: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
        values = self.get(table, key, prefix, list, [])
        out = []
        for v in values:
            if (a := self.address(v, f"{prefix}.{key}")) is not None:
                out.append(a)
        return tuple(dict.fromkeys(out))

    def choice(self, options: tuple[str, ...]) -> Callable[[Any], str | None]:
        return lambda v: None if v in options else f"expected {_or(options)}, got {v!r}"

    # -- sections ----------------------------------------------------------

    def config(self, data: dict[str, Any]) -> Config | None:
        self.unknown_keys(
            data,
            "",
            {
                "site",
                "receiver",
                "delivery",
                "moderation",
                "retention",
                "lists",
                "dynamic",
                "api",
                "webhooks",
                "bounces",
            },
        )
        site = self.site(self.table(data, "site"))
        receiver = self.receiver(self.table(data, "receiver"))
        delivery = self.delivery(self.table(data, "delivery"))
        moderation = self.moderation(self.table(data, "moderation"))
        retention = self.retention(self.table(data, "retention"))
        lists = self.lists(self.table(data, "lists"))
        dynamic = self.dynamic(data.get("dynamic", []), lists)
        api = self.api(self.table(data, "api"))
        webhooks = self.webhooks(self.table(data, "webhooks"))
        bounces = self.bounces(self.table(data, "bounces"))
        if site is None:
            return None
        return Config(
            self.path,
            site,
            receiver,
            delivery,
            moderation,
            retention,
            lists,
            dynamic,
            data,
            api,
            webhooks=webhooks,
            bounces=bounces,
        )

    def bounces(self, t: dict[str, Any]) -> Bounces:
        p = "bounces"
        self.unknown_keys(t, p, {"threshold", "decay_days", "sns_topics"})
        positive = lambda v: None if v > 0 else "expected a positive number"  # noqa: E731
        topics = self.get(t, "sns_topics", p, list, [])
        for topic in topics:
            if not (isinstance(topic, str) and topic.startswith("arn:aws")):
                self.problem(f"{p}.sns_topics", f"{topic!r} is not an SNS topic ARN")
        return Bounces(
            threshold=self.get(t, "threshold", p, int, 5, positive),
            decay_days=float(self.get(t, "decay_days", p, (int, float), 7.0, positive)),
            sns_topics=frozenset(x for x in topics if isinstance(x, str)),
        )

    def webhooks(self, t: dict[str, Any]) -> Webhooks:
        p = "webhooks"
        self.unknown_keys(
            t, p, {"urls", "secret_env", "events", "max_age_hours", "first_retry_seconds"}
        )
        urls = self.get(t, "urls", p, list, [])
        for url in urls:
            if not (isinstance(url, str) and url.startswith(("https://", "http://"))):
                self.problem(f"{p}.urls", f"{url!r} is not an http(s) URL")
        events = self.get(t, "events", p, list, list(WEBHOOK_EVENTS))
        for event in events:
            if event not in WEBHOOK_EVENTS:
                self.problem(
                    f"{p}.events", f"unknown event {event!r}; expected {_or(WEBHOOK_EVENTS)}"
                )
        return Webhooks(
            urls=tuple(u for u in urls if isinstance(u, str)),
            secret_env=self.get(t, "secret_env", p, str, "ROUTEMAIL_WEBHOOK_SECRET"),
            events=frozenset(e for e in events if e in WEBHOOK_EVENTS),
            max_age_hours=float(self.get(t, "max_age_hours", p, (int, float), 24.0)),
            first_retry_seconds=float(self.get(t, "first_retry_seconds", p, (int, float), 30.0)),
        )

    def site(self, t: dict[str, Any]) -> Site | None:
        self.unknown_keys(t, "site", {"domain", "admin", "base_url", "name"})
        for required in ("domain", "admin"):
            if required not in t:
                self.problem("site", f"missing key site.{required}")
        domain = self.get(t, "domain", "site", str, "")
        if domain and addresses.normalize(f"x@{domain}") is None:
            self.problem("site.domain", f"{domain!r} is not a domain name")
        admin = self.get(t, "admin", "site", str, "")
        admin = self.address(admin, "site.admin") if admin else ""
        base_url = self.get(
            t,
            "base_url",
            "site",
            str,
            f"https://{domain}",
            lambda v: None if v.startswith(("https://", "http://")) else "expected an http(s) URL",
        )
        name = self.get(t, "name", "site", str, domain)
        if not domain or not admin:
            return None
        return Site(domain.lower(), admin, base_url.rstrip("/"), name)

    def receiver(self, t: dict[str, Any]) -> Receiver:
        self.unknown_keys(
            t, "receiver", {"on_receipt", "max_size", "secret_file", "trusted_proxies"}
        )
        return Receiver(
            on_receipt=self.get(
                t, "on_receipt", "receiver", str, "run", self.choice(("run", "none"))
            ),
            max_size=self.get(
                t,
                "max_size",
                "receiver",
                int,
                DEFAULT_MAX_SIZE,
                lambda v: None if v > 0 else "expected a positive number of bytes",
            ),
            secret_file=self.get(t, "secret_file", "receiver", str, None),
            trusted_proxies=self.get(
                t,
                "trusted_proxies",
                "receiver",
                int,
                0,
                lambda v: None if v >= 0 else "expected 0 or more proxies",
            ),
        )

    def api(self, t: dict[str, Any]) -> Api:
        names = ("token_hours", "account_hours", "mail_interval_seconds", "window_seconds")
        ints = ("mails_per_client", "guess_limit", "max_request_bytes")
        self.unknown_keys(t, "api", {*names, *ints, "send_key_env"})
        positive = lambda v: None if v > 0 else "expected a positive number"  # noqa: E731
        values: dict[str, Any] = {}
        for key in names:
            default = getattr(Api, key)
            values[key] = float(self.get(t, key, "api", (int, float), default, positive))
        for key in ints:
            values[key] = self.get(t, key, "api", int, getattr(Api, key), positive)
        values["send_key_env"] = self.get(t, "send_key_env", "api", str, Api.send_key_env)
        return Api(**values)

    def delivery(self, t: dict[str, Any]) -> Delivery:
        self.unknown_keys(
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
        positive = lambda v: None if v > 0 else "expected a positive number"  # noqa: E731
        transport = self.get(t, "transport", "delivery", str, "outbox", self.choice(TRANSPORTS))
        rate = self.get(
            t,
            "rate",
            "delivery",
            (int, float, str),
            14.0,
            lambda v: (
                None
                if (v == "auto" if isinstance(v, str) else v > 0)
                else 'expected messages per second or "auto"'
            ),
        )
        if rate == "auto" and transport != "ses":
            self.problem(
                "delivery.rate",
                '"auto" reads the SES sending quota; with this transport give messages per second',
            )
        smtp_t = self.table(t, "smtp", "delivery.")
        self.unknown_keys(
            smtp_t,
            "delivery.smtp",
            {"host", "port", "tls", "username", "password_env", "timeout", "ca_file"},
        )
        p = "delivery.smtp"
        tls = self.get(
            smtp_t, "tls", p, str, "starttls", self.choice(("starttls", "implicit", "none"))
        )
        port_check = lambda v: None if 0 < v < 65536 else "expected a port, 1 to 65535"  # noqa: E731
        smtp = Smtp(
            host=self.get(smtp_t, "host", p, str, "localhost"),
            port=self.get(smtp_t, "port", p, int, 465 if tls == "implicit" else 25, port_check),
            tls=tls,
            username=self.get(smtp_t, "username", p, str, None),
            password_env=self.get(smtp_t, "password_env", p, str, None),
            timeout=float(self.get(smtp_t, "timeout", p, (int, float), 30.0, positive)),
            ca_file=self.get(smtp_t, "ca_file", p, str, None),
        )
        if smtp.username and not smtp.password_env:
            self.problem(
                "delivery.smtp.username",
                "needs password_env, the name of the environment variable holding the password",
            )
        ses_t = self.table(t, "ses", "delivery.")
        self.unknown_keys(
            ses_t, "delivery.ses", {"region", "configuration_set", "endpoint_url", "timeout"}
        )
        ses = Ses(
            region=self.get(ses_t, "region", "delivery.ses", str, "us-east-1"),
            configuration_set=self.get(ses_t, "configuration_set", "delivery.ses", str, None),
            endpoint_url=self.get(ses_t, "endpoint_url", "delivery.ses", str, None),
            timeout=float(self.get(ses_t, "timeout", "delivery.ses", (int, float), 30.0, positive)),
        )
        non_negative = lambda v: None if v >= 0 else "expected 0 or more"  # noqa: E731
        return Delivery(
            transport=transport,
            rate=rate if isinstance(rate, str) else float(rate),
            max_attempts=self.get(t, "max_attempts", "delivery", int, 8, positive),
            max_age_hours=float(
                self.get(t, "max_age_hours", "delivery", (int, float), 72.0, positive)
            ),
            retries=self.get(t, "retries", "delivery", int, 3, non_negative),
            backoff_seconds=float(
                self.get(t, "backoff_seconds", "delivery", (int, float), 1.0, positive)
            ),
            max_backoff_seconds=float(
                self.get(t, "max_backoff_seconds", "delivery", (int, float), 30.0, positive)
            ),
            smtp=smtp,
            ses=ses,
        )

    def moderation(self, t: dict[str, Any]) -> Moderation:
        self.unknown_keys(t, "moderation", {"pass", "hold_days"})
        passing = {n: frozenset({"PASS"}) for n in VERDICT_NAMES}
        pass_t = self.table(t, "pass", "moderation.")
        self.unknown_keys(pass_t, "moderation.pass", set(VERDICT_NAMES))
        for name in VERDICT_NAMES:
            values = self.get(pass_t, name, "moderation.pass", list, ["PASS"])
            bad = [v for v in values if v not in VERDICT_VALUES]
            if bad:
                self.problem(
                    f"moderation.pass.{name}",
                    f"{bad[0]!r} is not a verdict; expected {_or(sorted(VERDICT_VALUES))}",
                )
            else:
                passing[name] = frozenset(values)
        if "FAIL" in passing["virus"]:
            self.problem("moderation.pass.virus", "a virus FAIL can never pass")
            passing["virus"] = frozenset({"PASS"})
        hold_days = self.get(
            t,
            "hold_days",
            "moderation",
            (int, float),
            14.0,
            lambda v: None if v > 0 else "expected a positive number of days",
        )
        return Moderation(passing, float(hold_days))

    def retention(self, t: dict[str, Any]) -> Retention:
        self.unknown_keys(t, "retention", {"retention_days", "archive"})
        days = self.get(
            t,
            "retention_days",
            "retention",
            (int, float),
            30.0,
            lambda v: None if v > 0 else "expected a positive number of days",
        )
        return Retention(float(days), self.get(t, "archive", "retention", bool, True))

    def posters(self, t: Mapping[str, Any], prefix: str, default: str) -> str | tuple[str, ...]:
        value = t.get("posters", default)
        if isinstance(value, str) and value in POSTER_POLICIES:
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(a for v in value if (a := self.address(v, f"{prefix}.posters")))
        self.problem(
            f"{prefix}.posters", "expected members, moderators, anyone or a list of addresses"
        )
        return default

    def lists(self, t: dict[str, Any]) -> dict[str, MailingList]:
        out: dict[str, MailingList] = {}
        allowed = {
            "description",
            "members",
            "moderators",
            "bcc",
            "posters",
            "subject_prefix",
            "header",
            "footer",
            "reply_to",
            "archive",
        }
        for raw_name, lt in t.items():
            prefix = f"lists.{raw_name}"
            name = raw_name.lower()
            if not LIST_NAME.match(name):
                self.problem(prefix, "list names are lower-case letters, digits and . _ + -")
                continue
            if reserved := reserved_name(name):
                self.problem(prefix, f"{name!r} is reserved: {reserved}")
                continue
            if name in out:
                self.problem(prefix, f"list {name!r} is defined twice")
                continue
            if not isinstance(lt, dict):
                self.problem(prefix, "expected a table")
                continue
            self.unknown_keys(lt, prefix, allowed)
            out[name] = MailingList(
                name=name,
                description=self.get(lt, "description", prefix, str, ""),
                members=self.addresses(lt, "members", prefix),
                moderators=self.addresses(lt, "moderators", prefix),
                bcc=self.addresses(lt, "bcc", prefix),
                posters=self.posters(lt, prefix, "members"),
                subject_prefix=self.get(lt, "subject_prefix", prefix, str, ""),
                header=self.template(lt, "header", prefix),
                footer=self.template(lt, "footer", prefix),
                reply_to=self.get(lt, "reply_to", prefix, str, "author", self.choice(REPLY_TO)),
                archive=self.get(lt, "archive", prefix, bool, True),
            )
        return out

    def template(self, t: Mapping[str, Any], key: str, prefix: str) -> str:
        from routemail.templates import check_template

        return str(self.get(t, key, prefix, str, "", check_template))

    def dynamic(self, value: Any, lists: Mapping[str, MailingList]) -> tuple[DynamicRule, ...]:
        if not isinstance(value, list):
            self.problem("dynamic", "expected [[dynamic]] tables")
            return ()
        rules = []
        for i, t in enumerate(value):
            prefix = f"dynamic[{i}]"
            if not isinstance(t, dict):
                self.problem(prefix, "expected a table")
                continue
            rule = self.dynamic_rule(t, prefix, i, lists)
            if rule:
                rules.append(rule)
        return tuple(rules)

    def dynamic_rule(
        self, t: dict[str, Any], prefix: str, index: int, lists: Mapping[str, MailingList]
    ) -> DynamicRule | None:
        from routemail.resolvers import OPTION_KEYS, check_options

        resolver = self.get(t, "resolver", prefix, str, None, self.choice(RESOLVERS))
        pattern_text = self.get(t, "pattern", prefix, str, None)
        if resolver is None or pattern_text is None:
            if "resolver" not in t or "pattern" not in t:
                self.problem(prefix, "a [[dynamic]] entry needs pattern and resolver")
            return None
        common = {"pattern", "resolver", "description", "posters", "moderators"}
        self.unknown_keys(t, prefix, common | OPTION_KEYS[resolver])
        try:
            pattern = re.compile(pattern_text, re.IGNORECASE)
        except re.error as exc:
            self.problem(f"{prefix}.pattern", f"bad regular expression: {exc}")
            return None
        for name in lists:
            if pattern.fullmatch(name):
                self.problem(
                    f"{prefix}.pattern",
                    f"matches the named list {name!r}, which would hide it; narrow the pattern",
                )
        # moderators is either a list of addresses for every list of the pattern, or
        # (sqlite) a query, which belongs to the resolver's options.
        static_moderators = isinstance(t.get("moderators", []), list)
        options = {
            k: v
            for k, v in t.items()
            if k not in common or (k == "moderators" and not static_moderators)
        }
        if not static_moderators and resolver != "sqlite":
            self.problem(f"{prefix}.moderators", "expected a list of addresses")
        for key, message in check_options(resolver, options, pattern):
            self.problem(f"{prefix}.{key}", message)
        return DynamicRule(
            pattern=pattern,
            resolver=resolver,
            description=self.get(t, "description", prefix, str, ""),
            posters=self.posters(t, prefix, "anyone"),
            moderators=self.addresses(t, "moderators", prefix) if static_moderators else (),
            options=options,
            index=index,
        )


# Addresses routemail answers itself (bounces, unsubscribes, approvals, its own mail).
RESERVED_SUFFIXES = ("-bounces", "-owner", "-unsubscribe", "-request", "-confirm")
RESERVED_NAMES = ("outgoing", "routemail", "no-reply", "postmaster", "mailer-daemon")


def reserved_name(name: str) -> str | None:
    """Why name cannot be a list, or None."""
    if name.endswith(RESERVED_SUFFIXES):
        return f"names ending in {', '.join(RESERVED_SUFFIXES)} are routemail's own addresses"
    if name.startswith("approve+"):
        return "approve+ addresses carry moderators' approvals"
    if name in RESERVED_NAMES:
        return "routemail uses this address itself"
    return None


def normalize_address(value: Any) -> str | None:
    return addresses.normalize(value) if isinstance(value, str) else None


def _type_name(kind: type) -> str:
    return {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }.get(kind, kind.__name__)


def _or(options: Any) -> str:
    items = list(options)
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]
