"""Putting mail into the queue from the shell: `routemail inject` and `routemail send`."""

from __future__ import annotations

from typing import Any

import click

from routemail import addresses, rfc5322
from routemail import config as configmod
from routemail.background import start_run
from routemail.cli.app import Context, cli, pass_context
from routemail.errors import ConfigError, RoutemailError

VERDICT_HELP = 'SES verdicts, e.g. "dkim=PASS spf=FAIL"; unnamed ones count as PASS'


def _parse_verdicts(_: click.Context, __: click.Parameter, value: str) -> dict[str, str]:
    verdicts = dict.fromkeys(configmod.VERDICT_NAMES, "PASS")
    for item in value.split():
        name, _sep, v = item.partition("=")
        if name.lower() not in verdicts or v.upper() not in configmod.VERDICT_VALUES:
            raise click.BadParameter(
                f"{item!r}: expected name=VALUE, name one of "
                f"{', '.join(configmod.VERDICT_NAMES)}, VALUE one of "
                f"{', '.join(sorted(configmod.VERDICT_VALUES))}"
            )
        verdicts[name.lower()] = v.upper()
    return verdicts


def _parse_recipients(_: click.Context, __: click.Parameter, value: tuple[str, ...]) -> list[str]:
    out = []
    for item in value:
        address = addresses.normalize(item)
        if address is None:
            raise click.BadParameter(f"{item!r} is not an email address")
        out.append(address)
    return out


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--to",
    "recipients",
    multiple=True,
    required=True,
    metavar="ADDR",
    callback=_parse_recipients,
    help="An envelope recipient (repeatable).",
)
@click.option("--verdicts", default="", callback=_parse_verdicts, help=VERDICT_HELP)
@click.option(
    "--run/--no-run",
    "then_run",
    default=True,
    help="Start `routemail run` in the background afterwards, as the receiver does "
    '(default, unless [receiver] on_receipt = "none").',
)
@pass_context
def inject(
    obj: Context, file: Any, recipients: list[str], verdicts: dict[str, str], then_run: bool
) -> None:
    """Queue a message FILE (or - for standard input) as if received.

    For a local MTA: Postfix can pipe list mail here. The message is on disk
    before the id is printed; routing happens in a run started in the
    background (its output goes to data/run.log), or by the next timer run.
    """
    spool = obj.spool
    with spool.incoming() as incoming:
        while chunk := file.read(1 << 16):
            incoming.write(chunk)
        if incoming.size == 0:
            raise RoutemailError("empty message: nothing queued")
        problem = rfc5322.header_problem(incoming.head)
        if problem:
            raise RoutemailError(f"{problem}; nothing queued")
        receipt = incoming.commit(recipients, verdicts)
    click.echo(f"{receipt.id}{' (duplicate)' if receipt.duplicate else ''}")
    if then_run and _runs_on_receipt(obj):
        start_run(
            obj.config_path.resolve(),
            obj.data_dir.resolve(),
            lambda problem: click.echo(f"warning: {problem}", err=True),
        )


def _runs_on_receipt(obj: Context) -> bool:
    """[receiver] on_receipt; with a broken lists.toml, run anyway: the run reports it."""
    try:
        return obj.config.receiver.on_receipt == "run"
    except ConfigError:
        return True


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--to",
    "recipients",
    multiple=True,
    metavar="ADDR",
    callback=_parse_recipients,
    help="A recipient (repeatable); default: the To, Cc and Bcc headers.",
)
@click.option("--run/--no-run", "then_run", default=True, help="Run routemail now (default).")
@pass_context
def send(obj: Context, file: Any, recipients: list[str], then_run: bool) -> None:
    """Queue transactional mail in FILE (or - for standard input): password resets,
    invitations, reports. Pacing, retries and suppression apply as to list mail;
    From must be on the site's domain."""
    from routemail.outgoing import queue as queue_outgoing
    from routemail.run import run as do_run

    spool = obj.spool
    receipt, to = queue_outgoing(obj.config, spool, file.read(), recipients)
    click.echo(f"{receipt.id}: queued for {len(to)} recipient{'s' if len(to) != 1 else ''}")
    if then_run:
        do_run(obj.config, spool)
