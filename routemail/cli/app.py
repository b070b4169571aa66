"""The `routemail` command group: options, shared context, and how failures are shown."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from routemail import config as configmod
from routemail import sidecar
from routemail.errors import ConfigError, RoutemailError
from routemail.spool import Spool


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
        return Spool(self.site_data / "maillist").ensure()

    @property
    def site_data(self) -> Path:
        """The data directory, once it is clear this is a site: nothing is created
        where a mistyped --data or ROUTEMAIL_DATA points."""
        if not self.config_path.is_file():
            raise RoutemailError(
                f"no routemail site: {self.config_path} does not exist; point "
                "ROUTEMAIL_CONFIG (or --config) at the site's lists.toml, "
                "or create a site with `routemail init DIR`"
            )
        if not self.data_dir.is_dir():
            raise RoutemailError(
                f"no routemail site: the data directory {self.data_dir} does not exist; "
                "point ROUTEMAIL_DATA (or --data) at the site's data directory, "
                "or create a site with `routemail init DIR`"
            )
        return self.data_dir


EXIT_BROKEN_PIPE = 141  # what a shell reports for a program ended by SIGPIPE


def _stop_writing() -> None:
    """Point stdout at /dev/null so that flushing at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


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
        except BrokenPipeError:
            _stop_writing()  # `routemail queue | head`: the reader has all it wants
            ctx.exit(EXIT_BROKEN_PIPE)
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


class TakesQueueId(click.Command):
    """A command whose first argument is a queue id: one typed where an option may be
    ('-AbC...', as about one id in 64 is) is refused with the form that works."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            raise click.UsageError(
                f"{exc.format_message()}; a queue id that starts with '-' goes after '--': "
                f"routemail {self.name} -- ID",
                ctx,
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


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=json_value))


def json_value(value: Any) -> Any:
    """Times as the sidecar writes them (RFC 3339, UTC, Z); anything else as text."""
    if isinstance(value, dt.datetime):
        return sidecar.format_time(value)
    return str(value)


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 list', '2 lists'; words is the plural where adding s is wrong ('entries')."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def main() -> None:
    cli(prog_name="routemail")
