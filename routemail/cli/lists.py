"""The lists: `routemail lists [create|delete]` and `routemail members [add|remove]`."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import click

from routemail.cli.app import Context, cli, emit_json, pass_context, plural
from routemail.errors import RoutemailError

if TYPE_CHECKING:
    from routemail.owners import Actor


@cli.group(name="lists", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the lists as JSON.")
@click.pass_context
def lists_command(ctx: click.Context, as_json: bool) -> None:
    """Show the named lists and the dynamic list patterns; create or delete a list."""
    if ctx.invoked_subcommand is None:
        obj = ctx.find_object(Context)
        assert obj is not None  # the cli group made it
        _show_lists(obj, as_json)


@lists_command.command(name="create")
@click.argument("name")
@click.option(
    "--admin", "admin", required=True, help="Its administrator: moderator and first member."
)
@click.option("--description", default="", help="One line saying what the list is for.")
@click.option(
    "--posters",
    type=click.Choice(["members", "moderators", "anyone"]),
    default="members",
    show_default=True,
    help="Who may post without moderation.",
)
@pass_context
def lists_create(obj: Context, name: str, admin: str, description: str, posters: str) -> None:
    """Create the list NAME in lists.toml."""
    from routemail import owners

    who = _address(admin, "--admin")
    owners.create_list(obj.config, obj.spool, name, who, _shell(), description, posters)
    click.echo(f"created {name.lower()}@{obj.config.site.domain}, administered by {who}")


@lists_command.command(name="delete")
@click.argument("name")
@pass_context
def lists_delete(obj: Context, name: str) -> None:
    """Delete the list NAME from lists.toml (messages held for it expire)."""
    from routemail import owners

    owners.delete_list(obj.config, obj.spool, name, _shell())
    click.echo(f"deleted {name.lower()}")


def _show_lists(obj: Context, as_json: bool) -> None:
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


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument(
    "words", metavar="ADDRESS | add LIST ADDR... | remove LIST ADDR...", nargs=-1, required=True
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the resolution or the changes as JSON."
)
@click.option("--invite", is_flag=True, help="add: mail each a link to confirm instead of adding.")
@pass_context
def members(obj: Context, words: tuple[str, ...], as_json: bool, invite: bool) -> None:
    """Resolve the list at ADDRESS (or a bare list name): recipients, bcc, moderators.
    `members add LIST ADDR...` adds members (each gets a welcome mail with a link to
    leave; --invite mails a link to confirm instead); `members remove LIST ADDR...`
    removes them."""
    if words[0] in ("add", "remove"):
        _change_members(obj, words, as_json, invite)
        return
    if len(words) != 1:
        raise click.UsageError("give one ADDRESS, or add|remove LIST ADDR...")
    _resolve(obj, words[0], as_json)


def _change_members(obj: Context, words: tuple[str, ...], as_json: bool, invite: bool) -> None:
    from routemail import owners
    from routemail.run import run as do_run

    verb, *rest = words
    if len(rest) < 2:
        raise click.UsageError(
            f"routemail members {verb} LIST ADDR...: give the list and addresses"
        )
    listname, *wanted = rest
    if verb == "add":
        result = owners.add_members(obj.config, obj.spool, listname, wanted, _shell(), invite)
        do_run(obj.config, obj.spool)  # the welcome mails
    else:
        if invite:
            raise click.UsageError("--invite goes with add")
        result = owners.remove_members(obj.config, obj.spool, listname, wanted, _shell())
    if as_json:
        emit_json({"list": listname.lower(), "members": result})
        return
    for address, outcome in result.items():
        click.echo(f"{address}: {outcome}")


def _shell() -> Actor:
    from routemail.owners import Actor

    return Actor(f"shell:{getpass.getuser()}", "shell")


def _address(value: str, what: str) -> str:
    from routemail import addresses

    norm = addresses.normalize(value)
    if norm is None:
        raise click.BadParameter(
            f"{value!r} is not a plain address like ann@example.com", param_hint=what
        )
    return norm


def _resolve(obj: Context, address: str, as_json: bool) -> None:
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
