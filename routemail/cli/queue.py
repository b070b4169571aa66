"""Looking at the queue: `routemail queue` and `routemail show`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from routemail import sidecar
from routemail.cli.app import Context, TakesQueueId, cli, emit_json, pass_context


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
    """Show a queue entry: header summary and its sidecar as a timeline."""
    spool = obj.spool
    msg_id = spool.resolve_id(msg_id)
    history = spool.history(msg_id)
    headers = dict(_header_summary(spool.message_path(msg_id)))
    if as_json:
        emit_json(
            {
                "id": msg_id,
                "state": sidecar.summary_state(history, spool.is_pending(msg_id)),
                "headers": headers,
                "events": [
                    {"code": e.code, "time": e.time, "fields": list(e.fields)}
                    for e in history.events
                ],
            }
        )
        return
    click.echo(f"id:      {msg_id}")
    click.echo(f"state:   {sidecar.summary_state(history, spool.is_pending(msg_id))}")
    for name, value in headers.items():
        click.echo(f"{name + ':':8} {value}")
    click.echo("")
    for e in history.events:
        when = sidecar.format_time(e.time) if e.time else " " * 20
        click.echo(f"{when}  {sidecar.describe(e)}")


def _header_summary(path: Path) -> Iterator[tuple[str, str]]:
    from routemail.message import header_summary

    try:
        head = path.read_bytes()[: 1 << 20]
    except FileNotFoundError:
        yield "message", "(missing)"
        return
    yield from header_summary(head).items()
