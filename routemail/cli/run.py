"""`routemail run`: process the queue."""

from __future__ import annotations

import sys

import click

from routemail.cli.app import Context, cli, emit_json, pass_context


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
        emit_json(report.__dict__)
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
