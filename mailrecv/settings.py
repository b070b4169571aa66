"""The receiver's settings: paths and secret from the environment, the rest from [receiver]."""

from __future__ import annotations

import logging
import os
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from routemail.config import DEFAULT_MAX_SIZE, SesInbound
from routemail.errors import ConfigError, Problem
from routemail.spool import Spool
from routemail.validation import settings as validate_settings
from routemail.validation.checker import Checker

log = logging.getLogger("mailrecv")


@dataclass(frozen=True)
class Settings:
    config_path: Path
    data_dir: Path
    secret: bytes | None
    on_receipt: str = "run"
    max_size: int = DEFAULT_MAX_SIZE
    trusted_proxies: int = 0
    clock: Callable[[], float] = time.time

    @cached_property
    def spool(self) -> Spool:
        return Spool(self.data_dir / "maillist")


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment and lists.toml's [receiver] table.

    Only that table is read, leniently: a mistake elsewhere in lists.toml
    must never make the receiver refuse mail.
    """
    o = dict(overrides or {})
    config_path = Path(o.get("config_path") or os.environ.get("ROUTEMAIL_CONFIG", "lists.toml"))
    data_dir = Path(o.get("data_dir") or os.environ.get("ROUTEMAIL_DATA", "data"))
    receiver = _receiver_table(config_path)
    secret = (
        o.get("secret")
        or os.environ.get("MAILRECV_SECRET")
        or _secret_file(receiver.get("secret_file"), config_path)
    )
    return Settings(
        config_path=config_path.resolve(),
        data_dir=data_dir.resolve(),
        secret=secret.encode("utf-8") if isinstance(secret, str) else secret,
        on_receipt=o.get("on_receipt") or str(receiver.get("on_receipt", "run")),
        max_size=int(o.get("max_size") or receiver.get("max_size", DEFAULT_MAX_SIZE)),
        trusted_proxies=_trusted_proxies(receiver.get("trusted_proxies", 0)),
        clock=o.get("clock") or time.time,
    )


def _trusted_proxies(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    log.warning("receiver.trusted_proxies must be a whole number >= 0, not %r; using 0", value)
    return 0


def _receiver_table(config_path: Path) -> dict[str, Any]:
    try:
        table = tomllib.loads(config_path.read_text("utf-8")).get("receiver", {})
    except (OSError, ValueError) as exc:
        log.warning("cannot read [receiver] from %s (%s); using defaults", config_path, exc)
        return {}
    return table if isinstance(table, dict) else {}


def _secret_file(name: Any, config_path: Path) -> str | None:
    if not isinstance(name, str):
        return None
    path = Path(name) if Path(name).is_absolute() else config_path.parent / name
    try:
        return path.read_text("utf-8").strip() or None
    except OSError as exc:
        log.error("cannot read receiver.secret_file %s: %s", path, exc.strerror)
        return None


def ses_inbound(config_path: Path) -> SesInbound:
    """[receiver.ses_inbound], checked as `routemail check` checks it; ConfigError with
    every problem in [receiver] otherwise. Only that table counts: a mistake elsewhere
    in lists.toml does not stop inbound mail."""
    try:
        text = config_path.read_text("utf-8")
        data = tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(Problem(str(config_path), None, "", f"cannot read: {exc}")) from exc
    checker = Checker(text, config_path)
    receiver = validate_settings.receiver(checker, checker.table(data, "receiver"))
    if checker.problems:
        raise ConfigError(checker.problems)
    return receiver.ses_inbound
