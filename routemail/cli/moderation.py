"""Moderating from the shell: `routemail approve` and `routemail reject`."""

from __future__ import annotations

import click

from routemail.cli.app import Context, TakesQueueId, cli, pass_context
from routemail.webhooks import Outbox


@cli.command(cls=TakesQueueId)
@click.argument("msg_id", metavar="ID")
@click.argument("listname", metavar="LIST")
@click.option("--run/--no-run", "then_run", default=True, help="Deliver it now (default).")
@pass_context
def approve(obj: Context, msg_id: str, listname: str, then_run: bool) -> None:
    """Approve a message held for LIST, as a moderator's reply would."""
    from routemail.moderate import decide_from_shell
    from routemail.run import run as do_run

    spool = obj.spool
    hooks = Outbox(obj.site_data, obj.config.webhooks)
    click.echo(decide_from_shell(spool, spool.resolve_id(msg_id), listname, hooks=hooks))
    if then_run:
        do_run(obj.config, spool)


@cli.command(cls=TakesQueueId)
@click.argument("msg_id", metavar="ID")
@click.argument("listname", metavar="LIST")
@pass_context
def reject(obj: Context, msg_id: str, listname: str) -> None:
    """Reject a message held for LIST: it is never delivered there."""
    from routemail.moderate import decide_from_shell

    spool = obj.spool
    hooks = Outbox(obj.site_data, obj.config.webhooks)
    click.echo(
        decide_from_shell(spool, spool.resolve_id(msg_id), listname, reject=True, hooks=hooks)
    )
