"""Bounces and the suppression list: `routemail bounces`, `routemail suppression ...`."""

from __future__ import annotations

from typing import Any

import click

from routemail import addresses, sidecar
from routemail.cli.app import Context, cli, emit_json, pass_context, utc
from routemail.errors import RoutemailError


def _suppression(obj: Context) -> Any:
    from routemail.state import State
    from routemail.suppression import Suppression

    return Suppression(State.open(obj.site_data), obj.config.bounces)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print scores and history as JSON.")
@click.option("--limit", default=50, show_default=True, help="How many recent changes to show.")
@pass_context
def bounces(obj: Context, as_json: bool, limit: int) -> None:
    """Show bounce scores and the recent bounce, complaint and unsubscribe history."""
    s = _suppression(obj)
    try:
        scores, history = s.scores(), s.history(limit)
    finally:
        s.state.close()
    if as_json:
        emit_json(
            {
                "scores": [sc.__dict__ for sc in scores],
                "history": [dict(h.__dict__, time=utc(h.time)) for h in history],
            }
        )
        return
    click.echo(f"bounce scores (disabled at {obj.config.bounces.threshold}):")
    for sc in scores:
        state = "disabled" if sc.disabled else "active"
        click.echo(f"  {sc.address:40} {sc.score:>4g}  {state}")
    click.echo("recent changes:")
    for h in history:
        when = sidecar.format_time(utc(h.time))
        click.echo(f"  {when}  {h.address}  {h.list or '(all lists)'}  {h.event}: {h.action}")


@cli.group()
def suppression() -> None:
    """Show and manage the addresses routemail never sends to."""


@suppression.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the suppression list as JSON.")
@pass_context
def suppression_list(obj: Context, as_json: bool) -> None:
    """Every suppressed address, the list it applies to ('' = all) and why."""
    s = _suppression(obj)
    try:
        entries = s.entries()
    finally:
        s.state.close()
    if as_json:
        emit_json([dict(e.__dict__, created=utc(e.created)) for e in entries])
        return
    if not entries:
        click.echo("nobody is suppressed")
    for e in entries:
        click.echo(
            f"{e.address:40} {e.list or '(all lists)':20} {e.reason}"
            + (f": {e.detail}" if e.detail else "")
        )


def _address_argument(_: click.Context, __: click.Parameter, value: str) -> str:
    address = addresses.normalize(value)
    if address is None:
        raise click.BadParameter(f"{value!r} is not an email address")
    return address


@suppression.command(name="add")
@click.argument("address", callback=_address_argument)
@click.option("--list", "listname", default="", help="Only for this list (default: all mail).")
@click.option("--reason", default="", help="A note kept with the entry.")
@pass_context
def suppression_add(obj: Context, address: str, listname: str, reason: str) -> None:
    """Never send to ADDRESS again (on every list, or one)."""
    s = _suppression(obj)
    try:
        click.echo(f"{address}: {s.add(address, listname, f'shell:{_user()}', reason)}")
    finally:
        s.state.close()


@suppression.command(name="remove")
@click.argument("address", callback=_address_argument)
@click.option("--list", "listname", default="", help="The list the entry is for (default: all).")
@pass_context
def suppression_remove(obj: Context, address: str, listname: str) -> None:
    """Send to ADDRESS again; without --list this also clears its bounce score."""
    s = _suppression(obj)
    try:
        removed = s.remove(address, listname, f"shell:{_user()}")
    finally:
        s.state.close()
    if not removed:
        where = f"for {listname}" if listname else "for all lists"
        raise RoutemailError(
            f"{address} is not suppressed {where}; see `routemail suppression list`"
        )
    click.echo(f"{address}: no longer suppressed")


def _user() -> str:
    import getpass

    return getpass.getuser()
