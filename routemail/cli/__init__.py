"""The `routemail` command line, one module per concept; importing them registers the commands."""

from routemail.cli import (  # noqa: F401  (imported to register their commands)
    check,
    init,
    intake,
    lists,
    moderation,
    queue,
    run,
    status,
    suppression,
    webhooks,
)
from routemail.cli.app import cli, main

__all__ = ["cli", "main"]
