"""Moderating from the shell: `routemail held`, `routemail approve` and `routemail reject`."""

from __future__ import annotations

import click

from routemail.cli.app import Context, TakesQueueId, cli, emit_json, pass_context


@cli.command(cls=TakesQueueId)
@click.argument("msg_id", metavar="ID")
@click.argument("listname", metavar="LIST")
@click.option("--run/--no-run", "then_run", default=True, help="Deliver it now (default).")
@pass_context
def approve(obj: Context, msg_id: str, listname: str, then_run: bool) -> None:
    """Approve a message held for LIST, as a moderator's reply would."""
    _decide(obj, msg_id, listname, "approve", "", then_run)


@cli.command(cls=TakesQueueId)
@click.argument("msg_id", metavar="ID")
@click.argument("listname", metavar="LIST")
@click.option(
    "--reason",
    default="",
    help="Why; sent to the author (without one, they are told none was given).",
)
@click.option("--run/--no-run", "then_run", default=True, help="Tell the author now (default).")
@pass_context
def reject(obj: Context, msg_id: str, listname: str, reason: str, then_run: bool) -> None:
    """Reject a message held for LIST: it is never delivered there, and its author is told."""
    _decide(obj, msg_id, listname, "reject", reason, then_run)


def _decide(
    obj: Context, msg_id: str, listname: str, action: str, reason: str, then_run: bool
) -> None:
    from routemail.commandline import routemail_command
    from routemail.held import AlreadyDecided, NotHeld
    from routemail.moderate import decide_from_shell
    from routemail.run import run as do_run

    spool = obj.spool
    full_id = spool.resolve_id(msg_id)
    try:
        click.echo(decide_from_shell(obj.config, spool, full_id, listname, action, reason))
    except AlreadyDecided as exc:
        raise click.ClickException(str(exc)) from None
    except NotHeld:
        raise click.ClickException(
            f"{full_id} is not held for {listname.lower()}; "
            f"`{routemail_command('show', full_id)}` shows its history"
        ) from None
    if then_run:
        do_run(obj.config, spool)


@cli.command()
@click.argument("listname", metavar="[LIST]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the held messages as JSON.")
@pass_context
def held(obj: Context, listname: str | None, as_json: bool) -> None:
    """Show the messages waiting for a moderator (on LIST, or on every list)."""
    from routemail.commandline import routemail_command
    from routemail.held import held_on

    found = held_on(obj.config, obj.spool, listname)
    if as_json:
        emit_json({"held": [dict(h.as_json(), list=h.list) for h in found]})
        return
    if not found:
        click.echo(f"nothing is held for {listname}" if listname else "nothing is held")
        return
    for h in found:
        click.echo(f"{h.id}  {h.list}  from {h.sender}  received {h.received:%Y-%m-%d %H:%M}Z")
        click.echo(f"    subject: {h.subject or '(none)'}")
        click.echo(f"    held:    {h.reason}")
        click.echo(f"    expires: {h.expires:%Y-%m-%d %H:%M}Z")
        click.echo(f"    approve: {routemail_command('approve', h.id, h.list)}")
        click.echo(
            f"    reject:  {routemail_command('reject', h.id, h.list, options=('--reason', 'WHY'))}"
        )
