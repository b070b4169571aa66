"""`routemail init`: a new site, from flags or answers typed at a terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from routemail import addresses
from routemail.cli.app import cli
from routemail.site import DATA_MODE, ENV_GROUP_MODE, ENV_MODE, Answers, create


def _ask(value: str | None, flag: str, question: str, default: str | None = None) -> str:
    """The flag's value, else the answer typed at a terminal; never a silent guess."""
    if value:
        return value
    if not sys.stdin.isatty() and default is not None:
        return default
    if not sys.stdin.isatty():
        raise click.UsageError(f"{flag} is required (there is no terminal to ask on)")
    return str(click.prompt(question, default=default))


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path), default=".", metavar="DIR")
@click.option("--domain", help="The domain the list addresses are on (lists.example.org).")
@click.option("--admin", help="Where unknown mail and problems go (admin@example.org).")
@click.option("--base-url", help="The receiver's public URL (default https://DOMAIN).")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    help="The data directory: spool and state (default DIR/data; e.g. /var/lib/routemail).",
)
@click.option(
    "--user",
    help="The service user: it gets lists.toml and the data directory, and reads env "
    "through its group (mode 0640). Needs root.",
)
def init(
    directory: Path,
    domain: str | None,
    admin: str | None,
    base_url: str | None,
    data_dir: Path | None,
    user: str | None,
) -> None:
    """Create a site: DIR/lists.toml with [site] from the answers, DIR/env (mode 0600:
    ROUTEMAIL_CONFIG, ROUTEMAIL_DATA and a new MAILRECV_SECRET, for the systemd units'
    EnvironmentFile=), and the data directory (mode 0750). Missing answers are asked
    for on a terminal. An existing site is never overwritten.

    For example: routemail init /etc/routemail --data /var/lib/routemail
    """
    domain = _ask(domain, "--domain", "Domain of the list addresses").strip().lower()
    admin = _ask(admin, "--admin", "Admin address (unknown mail goes there)").strip()
    if addresses.normalize(admin) is None:
        raise click.BadParameter(f"{admin!r} is not an email address", param_hint="--admin")
    base_url = _ask(base_url, "--base-url", "Public URL of the receiver", f"https://{domain}")
    site = create(directory, data_dir or directory / "data", Answers(domain, admin, base_url), user)
    click.echo(f"created {site.config_path}: the site's lists; edit it, then `routemail check`")
    mode = ENV_GROUP_MODE if user else ENV_MODE
    click.echo(
        f"created {site.env_path} (mode {mode:o}): ROUTEMAIL_CONFIG, ROUTEMAIL_DATA and "
        "the receiver's secret, MAILRECV_SECRET"
    )
    click.echo(f"created {site.data_dir} (mode {DATA_MODE:o}): the spool and state")
    click.echo(f"next: set -a; . {site.env_path}; set +a; routemail check")
