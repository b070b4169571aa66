"""`routemail status`: the site at a glance, and whether anything needs a person."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import click

from routemail import health, runstate, sidecar
from routemail.cli.app import Context, cli, emit_json, pass_context, utc
from routemail.config import DEFAULT_MAX_SIZE


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_context
def status(obj: Context, as_json: bool) -> None:
    """Config, queue, last run, transport and suppressions; exits 1 when something is wrong.

    The same checks as the receiver's /healthz, except the shared secret, which
    only the receiver's environment holds.
    """
    now = time.time()
    report = gather(obj, now)
    if as_json:
        emit_json(report)
    else:
        for line in describe(report, now):
            click.echo(line)
    sys.exit(1 if report["problems"] else 0)


def gather(obj: Context, now: float) -> dict[str, Any]:
    config, config_problem = health.config_problem(obj.config_path)
    spool = obj.spool
    max_size = config.receiver.max_size if config else DEFAULT_MAX_SIZE
    site = health.Site(obj.config_path, spool, has_secret=True, max_size=max_size)
    by_state = Counter(sidecar.summary_state(e.history, e.pending) for e in spool.entries())
    queue = health.queue(spool)
    state = runstate.load(obj.site_data)
    last = state.last_run
    return {
        "config": {
            "path": str(obj.config_path),
            "valid": config is not None,
            "problem": config_problem,
        },
        "queue": {s: by_state.get(s, 0) for s in ("pending", "held", "done", "discarded")},
        "oldest_pending_age_seconds": queue.oldest_pending_age(now),
        "held": by_state.get("held", 0),
        "last_run": None
        if last is None
        else {
            "finished": utc(last.finished),
            "duration_seconds": round(last.duration, 3),
            "result": last.result,
            "processed": last.processed,
            "counts": last.counts,
            "problems": last.problems,
        },
        "transport": {
            "name": config.delivery.transport if config else None,
            "last_success": _time(state.transport.last_success),
            "last_failure": _time(state.transport.last_failure),
            "last_failure_detail": state.transport.last_failure_detail or None,
            "circuit_open": state.transport.circuit_open,
            "failing_since": _time(state.failing_since),
        },
        "suppressed": _suppressed(obj) if config else None,
        "problems": health.problems(site, now),
    }


def describe(r: dict[str, Any], now: float) -> list[str]:
    q, t, last = r["queue"], r["transport"], r["last_run"]
    config = "ok" if r["config"]["valid"] else f"INVALID: {r['config']['problem']}"
    age = r["oldest_pending_age_seconds"]
    lines = [
        f"config:      {r['config']['path']}: {config}",
        "queue:       " + ", ".join(f"{n} {s}" for s, n in q.items()),
        "oldest pending: " + ("none" if age is None else f"arrived {_ago(age)} ago"),
    ]
    if last is None:
        lines.append("last run:    none recorded")
    else:
        lines.append(
            f"last run:    {sidecar.format_time(last['finished'])} "
            f"({_ago(now - last['finished'].timestamp())} ago), {last['result']}, "
            f"{last['processed']} processed in {last['duration_seconds']:g} s"
        )
        lines += [f"             {p}" for p in last["problems"]]
    lines.append(
        f"transport:   {t['name'] or '?'}: last success {_when(t['last_success'])}, "
        f"last failure {_when(t['last_failure'])}"
        + (f" ({t['last_failure_detail']})" if t["last_failure_detail"] else "")
        + ("; circuit open" if t["circuit_open"] else "")
    )
    if t["failing_since"]:
        lines.append(f"             failing since {_when(t['failing_since'])}")
    if r["suppressed"] is not None:
        lines.append(f"suppressed:  {r['suppressed']} addresses")
    lines += [f"problem:     {p}" for p in r["problems"]] or ["health:      ok"]
    return lines


def _suppressed(obj: Context) -> int:
    from routemail.state import State
    from routemail.suppression import Suppression

    s = Suppression(State.open(obj.site_data), obj.config.bounces)
    try:
        return len(s.entries())
    finally:
        s.state.close()


def _time(seconds: float | None) -> Any:
    return None if seconds is None else utc(seconds)


def _when(value: Any) -> str:
    return "never" if value is None else sidecar.format_time(value)


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
