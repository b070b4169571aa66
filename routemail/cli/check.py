"""`routemail check`: validate lists.toml, and try what its dynamic lists will need."""

from __future__ import annotations

import sys

import click

from routemail import config as configmod
from routemail.cli.app import Context, cli, emit_json, pass_context, plural
from routemail.errors import ConfigError


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def check(obj: Context, as_json: bool) -> None:
    """Validate lists.toml; name the line and key of every mistake.

    Beyond the file, each dynamic list's database must open read-only with
    every query compiling, and each lookup program must exist and be executable.
    """
    try:
        config = configmod.load(obj.config_path, resources=True)
    except ConfigError as exc:
        if as_json:
            emit_json({"ok": False, "problems": [p.as_json() for p in exc.details]})
            sys.exit(2)
        raise
    summary = {
        "ok": True,
        "lists": len(config.lists),
        "dynamic": len(config.dynamic),
        "transport": config.delivery.transport,
        "problems": [],
    }
    if as_json:
        emit_json(summary)
    else:
        click.echo(
            f"{config.path}: ok: {plural(len(config.lists), 'list')}, "
            f"{plural(len(config.dynamic), 'dynamic pattern')}, "
            f"transport {config.delivery.transport}"
        )
