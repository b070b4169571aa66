"""`routemail check`: validate lists.toml."""

from __future__ import annotations

import sys

import click

from routemail.cli.app import Context, cli, emit_json, pass_context
from routemail.errors import ConfigError


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def check(obj: Context, as_json: bool) -> None:
    """Validate lists.toml; name the line and key of every mistake."""
    try:
        config = obj.config
    except ConfigError as exc:
        if as_json:
            emit_json({"ok": False, "problems": exc.problems})
            sys.exit(2)
        raise
    summary = {
        "ok": True,
        "lists": len(config.lists),
        "dynamic": len(config.dynamic),
        "transport": config.delivery.transport,
    }
    if as_json:
        emit_json(summary)
    else:
        click.echo(
            f"{config.path}: ok: {len(config.lists)} lists, {len(config.dynamic)} dynamic "
            f"patterns, transport {config.delivery.transport}"
        )
