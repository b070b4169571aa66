"""`routemail webhooks`: events waiting for delivery and those given up on."""

from __future__ import annotations

import click

from routemail import sidecar
from routemail.cli.app import Context, cli, emit_json, pass_context, utc


@cli.command(name="webhooks")
@click.option("--deliver", is_flag=True, help="Attempt every due event now.")
@click.option("--json", "as_json", is_flag=True, help="Print pending and failed events as JSON.")
@pass_context
def webhooks_command(obj: Context, deliver: bool, as_json: bool) -> None:
    """Show webhook events waiting for delivery, and those given up on."""
    from routemail.webhooks import Outbox

    outbox = Outbox(obj.site_data, obj.config.webhooks)
    if deliver:
        delivered, left = outbox.deliver_due()
        if not as_json:
            click.echo(f"delivered {delivered}, {left} still pending")
    rows = {
        state: [
            {
                "url": p.url,
                "event": p.event,
                "attempts": p.attempts,
                "next_at": sidecar.format_time(utc(p.next_at)),
                "last_error": p.last_error,
            }
            for p in items
        ]
        for state, items in (("pending", outbox.pending()), ("failed", outbox.failed()))
    }
    if as_json:
        emit_json(rows)
        return
    for state, items in rows.items():
        click.echo(f"{state}: {len(items)}")
        for r in items:
            click.echo(
                f"  {r['event']:12} {r['url']}  attempts {r['attempts']}, next {r['next_at']}"
                + (f", last error: {r['last_error']}" if r["last_error"] else "")
            )
