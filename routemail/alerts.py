"""Mail to the admin when a person is needed: delivery failing for too long, or
lists.toml no longer validating. At most one mail per problem per day.

data/alerts.json remembers when each problem was last mailed about; an alert
that could not be sent (the transport is what is failing) is not remembered,
so the next run tries again. To tell the admin that lists.toml is broken,
routemail needs the site's address and transport from somewhere: the run
keeps a copy of the last lists.toml that validated (data/lists.toml.last-good)
and reads them from it.
"""

from __future__ import annotations

import contextlib
import json
import time
import tomllib
from pathlib import Path

from routemail import notify
from routemail.atomic import replace_file
from routemail.config import Config
from routemail.errors import RoutemailError
from routemail.runstate import RunState
from routemail.spool import Spool

STATE = "alerts.json"
LAST_GOOD = "lists.toml.last-good"
DAY = 86400.0
DELIVERY = "delivery"
CONFIG = "config"


def after_run(
    config: Config, spool: Spool, state: RunState, now: float | None = None
) -> str | None:
    """Mail the admin if delivery has failed longer than [monitoring]
    delivery_alert_minutes; a line saying why it could not, or None."""
    now = time.time() if now is None else now
    limit = config.monitoring.delivery_alert_minutes * 60
    if state.failing_since is None or now - state.failing_since < limit:
        return None
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(state.failing_since))
    detail = state.transport.last_failure_detail or "(no detail recorded)"
    text = (
        f"routemail on {config.site.domain} has not handed a copy to the "
        f"{config.delivery.transport} transport since {since}: every run since then "
        f"deferred its copies.\n\nThe last failure: {detail}\n\n"
        "The mail is kept and retried by every run. See `routemail status` and "
        "`routemail queue --state pending` on the server.\n"
    )
    subject = f"routemail: delivery failing since {since}"
    return _alert(config, spool, DELIVERY, subject, text, now)


def remember_config(config: Config, data_dir: Path) -> None:
    """Keep a copy of lists.toml as it validated, for config_broken()."""
    text = config.path.read_bytes()
    copy = data_dir / LAST_GOOD
    with contextlib.suppress(FileNotFoundError):
        if copy.read_bytes() == text:
            return
    replace_file(copy, text)


def config_broken(config_path: Path, data_dir: Path, problems: list[str]) -> str | None:
    """Tell the admin lists.toml stopped validating, with the last good copy's
    site and transport; a line saying why it could not, or None."""
    from routemail.validation import validate

    try:
        text = (data_dir / LAST_GOOD).read_text("utf-8")
        # Validated as if it were at its real place, so its relative paths still resolve.
        config, _ = validate(tomllib.loads(text), text, config_path)
    except (OSError, ValueError):
        return "no lists.toml that validated before is known; the admin is not mailed"
    if config is None:
        return None
    shown = "\n".join(f"  {p}" for p in problems[:20])
    text = (
        f"{config_path} on {config.site.domain} no longer validates, so no mail is "
        f"routed (the receiver still queues it):\n\n{shown}\n\n"
        "Run `routemail check` on the server, fix the file, and the next run "
        "routes everything that waited.\n"
    )
    spool = Spool(data_dir / "maillist")
    return _alert(config, spool, CONFIG, "routemail: lists.toml does not validate", text)


def _alert(
    config: Config, spool: Spool, problem: str, subject: str, text: str, now: float | None = None
) -> str | None:
    now = time.time() if now is None else now
    sent = _load(spool.root.parent)
    if now - sent.get(problem, 0.0) < DAY:
        return None
    try:
        result = notify.send(config, spool, config.site.admin, subject, text, "alert")
    except (RoutemailError, OSError) as exc:
        return f"alert to {config.site.admin} not sent: {exc}"
    if not result.sent:
        return f"alert to {config.site.admin} not sent: {result.detail}"
    sent[problem] = now
    replace_file(spool.root.parent / STATE, json.dumps(sent).encode())
    return None


def _load(data_dir: Path) -> dict[str, float]:
    try:
        data = json.loads((data_dir / STATE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items()} if isinstance(data, dict) else {}
