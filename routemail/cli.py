"""The `routemail` command line."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from routemail import addresses, sidecar
from routemail import config as configmod
from routemail.errors import ConfigError, RoutemailError
from routemail.spool import Spool

VERDICT_HELP = 'SES verdicts, e.g. "dkim=PASS spf=FAIL"; unnamed ones count as PASS'


class Context:
    """Where lists.toml and data/ are; the config is loaded on first use."""

    def __init__(self, config_path: Path, data_dir: Path) -> None:
        self.config_path = config_path
        self.data_dir = data_dir
        self._config: configmod.Config | None = None

    @property
    def config(self) -> configmod.Config:
        if self._config is None:
            self._config = configmod.load(self.config_path)
        return self._config

    @property
    def spool(self) -> Spool:
        return Spool(self.data_dir / "maillist").ensure()


class Group(click.Group):
    """Turns every expected failure into one line on stderr, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            ctx.exit(2)
        except RoutemailError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            name = f" {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"cannot access{name}: {exc.strerror or exc}") from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("ROUTEMAIL_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set ROUTEMAIL_DEBUG=1 for the traceback and report it)"
            ) from None


@click.group(
    cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get("ROUTEMAIL_CONFIG", "lists.toml"),
    show_default="$ROUTEMAIL_CONFIG or ./lists.toml",
    help="The lists configuration file.",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get("ROUTEMAIL_DATA", "data"),
    show_default="$ROUTEMAIL_DATA or ./data",
    help="The runtime data directory (spool, state).",
)
@click.version_option(package_name="routemail")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, data_dir: Path) -> None:
    """Route list mail from the spool: deliver, hold for moderation, or forward.

    Mail enters the spool through the receiver (POST /mailrecv), `routemail
    inject`, or the list API; `routemail run` decides what happens to it.
    """
    ctx.obj = Context(config_path, data_dir)


pass_context = click.make_pass_decorator(Context)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=_json_value))


def _json_value(value: Any) -> Any:
    """Times as the sidecar writes them (RFC 3339, UTC, Z); anything else as text."""
    if isinstance(value, dt.datetime):
        return sidecar.format_time(value)
    return str(value)


@cli.command()
@click.option("--quiet", "-q", is_flag=True, help="Print nothing unless something fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@pass_context
def run(obj: Context, quiet: bool, as_json: bool) -> None:
    """Process every queue entry that needs it, then tidy the queue.

    Only one run works at a time; a run started while another works asks
    that one to scan again and exits at once.
    """
    from routemail.run import run as do_run

    show_progress = not quiet and not as_json and sys.stderr.isatty()

    def progress(n: int, total: int, msg_id: str) -> None:
        click.echo(f"\rprocessing {n}/{total} {msg_id}", err=True, nl=n == total)

    report = do_run(obj.config, obj.spool, progress=progress if show_progress else None)
    if as_json:
        _emit_json(report.__dict__)
    elif report.busy:
        if not quiet:
            click.echo("another routemail run is working; it will scan again for new mail")
    elif not quiet:
        click.echo(
            f"processed {report.processed} entr{'y' if report.processed == 1 else 'ies'}"
            f" in {report.scans} scan{'s' if report.scans != 1 else ''}"
            + (f", removed {report.removed} old" if report.removed else "")
        )
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if report.errors:
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def check(obj: Context, as_json: bool) -> None:
    """Validate lists.toml; name the line and key of every mistake."""
    try:
        config = obj.config
    except ConfigError as exc:
        if as_json:
            _emit_json({"ok": False, "problems": exc.problems})
            sys.exit(2)
        raise
    summary = {
        "ok": True,
        "lists": len(config.lists),
        "dynamic": len(config.dynamic),
        "transport": config.delivery.transport,
    }
    if as_json:
        _emit_json(summary)
    else:
        click.echo(
            f"{config.path}: ok: {len(config.lists)} lists, {len(config.dynamic)} dynamic "
            f"patterns, transport {config.delivery.transport}"
        )


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
@click.option("--run/--no-run", "then_run", default=False, help="Run routemail afterwards.")
@pass_context
def inject(
    obj: Context, file: Any, recipients: list[str], verdicts: dict[str, str], then_run: bool
) -> None:
    """Queue a message FILE (or - for standard input) as if received.

    For a local MTA: Postfix can pipe list mail here.
    """
    spool = obj.spool
    with spool.incoming() as incoming:
        while chunk := file.read(1 << 16):
            incoming.write(chunk)
        if incoming.size == 0:
            raise RoutemailError("empty message: nothing queued")
        receipt = incoming.commit(recipients, verdicts)
    click.echo(f"{receipt.id}{' (duplicate)' if receipt.duplicate else ''}")
    if then_run:
        from routemail.run import run as do_run

        do_run(obj.config, spool)


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


def _entry_json(entry: Any) -> dict[str, Any]:
    h = entry.history
    return {
        "id": entry.id,
        "state": sidecar.summary_state(h, entry.pending),
        "received": h.received_at,
        "destinations": h.destinations,
        "sent": len(h.sent_to),
        "held": sorted(h.held_lists),
    }


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print entries as JSON.")
@click.option(
    "--state",
    type=click.Choice(["pending", "held", "done", "discarded"]),
    help="Only entries in this state.",
)
@pass_context
def queue(obj: Context, as_json: bool, state: str | None) -> None:
    """List queue entries and their state: pending, held, done or discarded."""
    rows = [_entry_json(e) for e in obj.spool.entries()]
    if state:
        rows = [r for r in rows if r["state"] == state]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("queue is empty")
        return
    click.echo(f"{'ID':22}  {'STATE':9}  {'RECEIVED':20}  {'SENT':>5}  DESTINATIONS")
    for r in rows:
        when = sidecar.format_time(r["received"]) if r["received"] else "-"
        click.echo(
            f"{r['id']:22}  {r['state']:9}  {when:20}  {r['sent']:>5}  "
            + ", ".join(r["destinations"])
        )


@cli.command()
@click.argument("msg_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
@pass_context
def show(obj: Context, msg_id: str, as_json: bool) -> None:
    """Show a queue entry: header summary and its sidecar as a timeline."""
    spool = obj.spool
    msg_id = spool.resolve_id(msg_id)
    history = spool.history(msg_id)
    headers = dict(_header_summary(spool.message_path(msg_id)))
    if as_json:
        _emit_json(
            {
                "id": msg_id,
                "state": sidecar.summary_state(history, spool.is_pending(msg_id)),
                "headers": headers,
                "events": [
                    {"code": e.code, "time": e.time, "fields": list(e.fields)}
                    for e in history.events
                ],
            }
        )
        return
    click.echo(f"id:      {msg_id}")
    click.echo(f"state:   {sidecar.summary_state(history, spool.is_pending(msg_id))}")
    for name, value in headers.items():
        click.echo(f"{name + ':':8} {value}")
    click.echo("")
    for e in history.events:
        when = sidecar.format_time(e.time) if e.time else " " * 20
        click.echo(f"{when}  {sidecar.describe(e)}")


@cli.command()
@click.argument("msg_id", metavar="ID")
@click.argument("listname", metavar="LIST")
@click.option("--run/--no-run", "then_run", default=True, help="Deliver it now (default).")
@pass_context
def approve(obj: Context, msg_id: str, listname: str, then_run: bool) -> None:
    """Approve a message held for LIST, as a moderator's reply would."""
    from routemail.moderate import decide_from_shell
    from routemail.run import run as do_run

    spool = obj.spool
    click.echo(decide_from_shell(spool, spool.resolve_id(msg_id), listname))
    if then_run:
        do_run(obj.config, spool)


@cli.command()
@click.argument("msg_id", metavar="ID")
@click.argument("listname", metavar="LIST")
@pass_context
def reject(obj: Context, msg_id: str, listname: str) -> None:
    """Reject a message held for LIST: it is never delivered there."""
    from routemail.moderate import decide_from_shell

    spool = obj.spool
    click.echo(decide_from_shell(spool, spool.resolve_id(msg_id), listname, reject=True))


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
        _emit_json({"lists": named, "dynamic": dynamic})
        return
    for m in named:
        posters = m["posters"] if isinstance(m["posters"], str) else "listed addresses"
        click.echo(
            f"{m['address']:40}  {m['members']:>4} members  posters: {posters:10}  "
            f"{m['description']}"
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
        _emit_json(result)
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


@cli.command(name="webhooks")
@click.option("--deliver", is_flag=True, help="Attempt every due event now.")
@click.option("--json", "as_json", is_flag=True, help="Print pending and failed events as JSON.")
@pass_context
def webhooks_command(obj: Context, deliver: bool, as_json: bool) -> None:
    """Show webhook events waiting for delivery, and those given up on."""
    from routemail.webhooks import Outbox

    outbox = Outbox(obj.data_dir, obj.config.webhooks)
    if deliver:
        delivered, left = outbox.deliver_due()
        if not as_json:
            click.echo(f"delivered {delivered}, {left} still pending")
    rows = {
        state: [
            {
                "url": p.url,
                "event": p.event,
                "attempts": p.attempts,
                "next_at": sidecar.format_time(_utc(p.next_at)),
                "last_error": p.last_error,
            }
            for p in items
        ]
        for state, items in (("pending", outbox.pending()), ("failed", outbox.failed()))
    }
    if as_json:
        _emit_json(rows)
        return
    for state, items in rows.items():
        click.echo(f"{state}: {len(items)}")
        for r in items:
            click.echo(
                f"  {r['event']:12} {r['url']}  attempts {r['attempts']}, next {r['next_at']}"
                + (f", last error: {r['last_error']}" if r["last_error"] else "")
            )


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _suppression(obj: Context) -> Any:
    from routemail.state import State
    from routemail.suppression import Suppression

    return Suppression(State.open(obj.data_dir), obj.config.bounces)


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
        _emit_json(
            {
                "scores": [sc.__dict__ for sc in scores],
                "history": [dict(h.__dict__, time=_utc(h.time)) for h in history],
            }
        )
        return
    click.echo(f"bounce scores (disabled at {obj.config.bounces.threshold}):")
    for sc in scores:
        state = "disabled" if sc.disabled else "active"
        click.echo(f"  {sc.address:40} {sc.score:>4g}  {state}")
    click.echo("recent changes:")
    for h in history:
        when = sidecar.format_time(_utc(h.time))
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
        _emit_json([dict(e.__dict__, created=_utc(e.created)) for e in entries])
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


def _header_summary(path: Path) -> Iterator[tuple[str, str]]:
    from routemail.message import header_summary

    try:
        head = path.read_bytes()[: 1 << 20]
    except FileNotFoundError:
        yield "message", "(missing)"
        return
    yield from header_summary(head).items()


def main() -> None:
    cli(prog_name="routemail")
