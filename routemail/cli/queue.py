"""Looking at the queue: `routemail queue` and `routemail show`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from routemail import sidecar, timeline
from routemail.cli.app import Context, TakesQueueId, cli, emit_json, pass_context
from routemail.errors import ConfigError


def _entry_json(entry: Any) -> dict[str, Any]:
    h = entry.history
    return {
        "id": entry.id,
        "state": sidecar.summary_state(h, entry.pending),
        "received": h.received_at,
        "destinations": h.destinations,
        "sent": len(h.sent_to),
        "held": sorted(h.held_lists),
    }


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print entries as JSON.")
@click.option(
    "--state",
    type=click.Choice(["pending", "held", "done", "discarded"]),
    help="Only entries in this state.",
)
@pass_context
def queue(obj: Context, as_json: bool, state: str | None) -> None:
    """List queue entries and their state: pending, held, done or discarded."""
    rows = [_entry_json(e) for e in obj.spool.entries()]
    if state:
        rows = [r for r in rows if r["state"] == state]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("queue is empty")
        return
    click.echo(f"{'ID':22}  {'STATE':9}  {'RECEIVED':20}  {'SENT':>5}  DESTINATIONS")
    for r in rows:
        when = sidecar.format_time(r["received"]) if r["received"] else "-"
        click.echo(
            f"{r['id']:22}  {r['state']:9}  {when:20}  {r['sent']:>5}  "
            + ", ".join(r["destinations"])
        )


@cli.command(cls=TakesQueueId)
@click.argument("msg_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
@pass_context
def show(obj: Context, msg_id: str, as_json: bool) -> None:
    """Show a queue entry: header summary, its sidecar as a timeline, and what became
    of each recipient's copy (sent, deferred, given up, suppressed, delivered, bounced,
    complained)."""
    spool = obj.spool
    msg_id = spool.resolve_id(msg_id)
    history = spool.history(msg_id)
    headers = dict(_header_summary(spool.message_path(msg_id)))
    view = timeline.of(spool, msg_id, _admin(obj))
    if as_json:
        emit_json(
            {
                **view.as_json(),
                "headers": headers,
                "events": [
                    {"code": e.code, "time": e.time, "fields": list(e.fields)}
                    for e in history.events
                ],
            }
        )
        return
    click.echo(f"id:      {msg_id}")
    click.echo(f"state:   {view.state}")
    for name, value in headers.items():
        click.echo(f"{name + ':':8} {value}")
    click.echo("")
    for e in history.events:
        when = sidecar.format_time(e.time) if e.time else " " * 20
        click.echo(f"{when}  {sidecar.describe(e)}")
    if view.recipients:
        click.echo("")
        click.echo("recipients:")
        for line in _recipient_lines(view.recipients.values()):
            click.echo(line)


def _admin(obj: Context) -> str | None:
    try:
        return obj.config.site.admin
    except ConfigError:
        return None  # show works on a broken lists.toml; the admin is only named


def _recipient_lines(recipients: Iterable[timeline.Recipient]) -> Iterator[str]:
    """One line per recipient: address, status, when, and what was said."""
    rows = [(r.address, r.status, *_latest(r)) for r in recipients]
    width = max(len(a) for a, *_ in rows)
    for address, status, when, detail in rows:
        yield f"  {address:{width}}  {status:10}  {when:20}  {detail}".rstrip()


def _latest(r: timeline.Recipient) -> tuple[str, str]:
    """(time, detail) of the step that gives the recipient its status."""
    status, step = r.current()
    if step is None:
        return (sidecar.format_time(r.queued) if r.queued else "-"), ""
    detail = step.detail
    if status == timeline.DEFERRED:
        detail += f" ({r.attempts} attempt{'s' * (r.attempts != 1)})"
    return (sidecar.format_time(step.at) if step.at else "-"), detail


def _header_summary(path: Path) -> Iterator[tuple[str, str]]:
    from routemail.message import header_summary

    try:
        head = path.read_bytes()[: 1 << 20]
    except FileNotFoundError:
        yield "message", "(missing)"
        return
    yield from header_summary(head).items()
