"""`routemail run`: process the queue, say what happened, and exit with a status that says it."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from routemail.cli.app import Context, cli, emit_json, pass_context
from routemail.config import Config
from routemail.errors import ConfigError, RoutemailError
from routemail.tally import Tally

if TYPE_CHECKING:
    from routemail.run import RunReport

# Exit statuses (2 is click's, for a bad command line, and an invalid lists.toml).
DONE = 0
ERRORS = 1  # something could not be processed at all: a message, the transport, webhooks
UNDELIVERED = 3  # copies were deferred (retried by a later run) or given up

EXIT_HELP = """\b
Exit status:
  0  all done: every copy handed over, suppressed, or nothing to do
  1  errors: a message could not be processed, or the transport not opened
  2  bad command line, or lists.toml does not validate
  3  copies deferred (retried by a later run) or given up; see the problem lines
"""


@cli.command(epilog=EXIT_HELP)
@click.option(
    "--quiet", "-q", is_flag=True, help="Print one line per problem and nothing otherwise."
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@pass_context
def run(obj: Context, quiet: bool, as_json: bool) -> None:
    """Process every queue entry that needs it, then tidy the queue.

    Only one run works at a time; a run started while another works asks
    that one to scan again and exits at once.
    """
    from routemail.run import run as do_run

    meter = ProgressLine() if not quiet and not as_json and sys.stderr.isatty() else None
    report = do_run(
        _config(obj),
        obj.spool,
        progress=meter.message if meter else None,
        on_copy=meter.copy if meter else None,
    )
    if meter:
        meter.finish()
    status = exit_status(report.tally)
    if as_json:
        emit_json(summary(report, status))
    elif report.busy:
        if not quiet:
            click.echo("another routemail run is working; it will scan again for new mail")
    elif not quiet:
        click.echo(
            f"processed {report.processed} entr{'y' if report.processed == 1 else 'ies'}"
            f" in {report.scans} scan{'s' if report.scans != 1 else ''}"
            + (f", removed {report.removed} old" if report.removed else "")
            + (f": {report.tally.total.describe()}" if report.tally.messages else "")
        )
        for msg_id, counts in report.tally.messages.items():
            click.echo(f"  {msg_id}: {counts.describe()}")
    for problem in report.tally.problems:
        click.echo(problem.line(), err=True)
    sys.exit(status)


def _config(obj: Context) -> Config:
    """The config; when it does not validate, the admin is told (once a day) before
    the problems are shown and the run exits 2."""
    try:
        return obj.config
    except ConfigError as exc:
        from routemail import alerts

        try:
            why = alerts.config_broken(obj.config_path, obj.site_data, exc.problems)
        except RoutemailError:  # not a site at all: nobody to tell, the problems stand
            why = None
        if why:
            click.echo(f"error: alerts: {why}", err=True)
        raise


def exit_status(t: Tally) -> int:
    return {"ok": DONE, "undelivered": UNDELIVERED}.get(t.result, ERRORS)


def summary(report: RunReport, status: int) -> dict[str, Any]:
    t = report.tally
    return {
        "busy": report.busy,
        "scans": report.scans,
        "processed": report.processed,
        "removed": report.removed,
        "webhooks_delivered": report.webhooks_delivered,
        "webhooks_pending": report.webhooks_pending,
        "total": t.total.as_dict(),
        "messages": {msg_id: c.as_dict() for msg_id, c in t.messages.items()},
        "lists": {name: c.as_dict() for name, c in t.lists.items()},
        "problems": [p.__dict__ for p in t.problems],
        "errors": t.errors,
        "exit_status": status,
    }


class ProgressLine:
    """One line on the terminal, redrawn at most a few times a second: the message,
    copies done of those started on, the rate and the time left for them."""

    INTERVAL = 0.25

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = 0.0
        self.where = ""
        self.drawn = False

    def message(self, n: int, total: int, msg_id: str) -> None:
        self.where = f"message {n}/{total}"

    def copy(self, t: Tally) -> None:
        now = time.monotonic()
        if now - self.shown < self.INTERVAL:
            return
        self.shown = now
        done, expected = t.copies_done, max(t.expected, t.copies_done)
        rate = done / max(now - self.started, 1e-6)
        left = (expected - done) / rate if rate > 0 else 0.0
        eta = time.strftime("%H:%M:%S", time.gmtime(left))
        click.echo(
            f"\r{self.where}  copies {done}/{expected}  {rate:.1f}/s  ETA {eta} ",
            err=True,
            nl=False,
        )
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            click.echo("", err=True)
