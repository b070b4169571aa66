"""Looking at the lists: `routemail lists` and `routemail members`."""

from __future__ import annotations

import click

from routemail.cli.app import Context, cli, emit_json, pass_context, plural
from routemail.errors import RoutemailError


@cli.command(name="lists")
@click.option("--json", "as_json", is_flag=True, help="Print the lists as JSON.")
@pass_context
def lists_command(obj: Context, as_json: bool) -> None:
    """Show the named lists and the dynamic list patterns."""
    config = obj.config
    named = [
        {
            "name": m.name,
            "address": f"{m.name}@{config.site.domain}",
            "description": m.description,
            "members": len(m.members),
            "moderators": list(m.moderators),
            "posters": m.posters if isinstance(m.posters, str) else list(m.posters),
        }
        for m in config.lists.values()
    ]
    dynamic = [
        {"pattern": r.pattern.pattern, "resolver": r.resolver, "description": r.description}
        for r in config.dynamic
    ]
    if as_json:
        emit_json({"lists": named, "dynamic": dynamic})
        return
    for m, ml in zip(named, config.lists.values(), strict=True):
        posters = ml.posters if isinstance(ml.posters, str) else "listed addresses"
        click.echo(
            f"{m['address']:40}  {plural(len(ml.members), 'member'):>12}  posters: {posters:10}  "
            f"{ml.description}"
        )
    for d in dynamic:
        click.echo(f"{d['pattern']:40}  dynamic ({d['resolver']})  {d['description']}")


@cli.command()
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print the resolution as JSON.")
@pass_context
def members(obj: Context, address: str, as_json: bool) -> None:
    """Resolve the list at ADDRESS (or a bare list name): recipients, bcc, moderators."""
    from routemail.lists import Directory

    config = obj.config
    directory = Directory(config)
    name = address if "@" not in address else directory.list_name(address)
    if name is None:
        raise RoutemailError(f"{address} is not on {config.site.domain}")
    resolved = directory.resolve(name)
    if resolved is None:
        raise RoutemailError(f"no list {name!r}: see `routemail lists`")
    result = {
        "list": resolved.name,
        "dynamic": resolved.rule is not None,
        "members": list(resolved.members),
        "bcc": list(resolved.bcc),
        "moderators": list(resolved.moderators),
    }
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"{resolved.name}@{config.site.domain}" + (" (dynamic)" if result["dynamic"] else "")
    )
    for key in ("members", "bcc", "moderators"):
        values = result[key]
        assert isinstance(values, list)
        click.echo(f"{key} ({len(values)}):")
        for value in values:
            click.echo(f"  {value}")
