"""Dynamic-list resolvers: recipients looked up from the list's name.

A [[dynamic]] entry's pattern captures named groups from the list name;
its resolver turns them into members, bcc recipients and moderators.
sqlite runs named-parameter queries (criteria only ever select conditions
written in the config), command runs a program without a shell, http GETs
a URL template. Any failure raises ResolverError: the caller must not
deliver to a partial list.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import string
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routemail import addresses
from routemail.errors import RoutemailError

FILTERS_GROUP = "filters"
FILTERS_PLACEHOLDER = "{filters}"
CRITERION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
CRITERION = re.compile(r"([-+])([A-Za-z][A-Za-z0-9_]*)")
CRITERIA = re.compile(r"(?:[-+][A-Za-z][A-Za-z0-9_]*)*")
SQL_PARAM = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")
QUERY_KEYS = ("members", "bcc", "moderators")
OPTION_KEYS: dict[str, set[str]] = {
    "sqlite": {"database", "exists", "members", "bcc", "moderators", "filters"},
    "command": {"command", "timeout"},
    "http": {"url", "timeout"},
}
DEFAULT_TIMEOUT = 10.0
MAX_HTTP_BODY = 10 * 1024 * 1024
# Prefixes of the command resolver's output lines; any other line is a member.
COMMAND_PREFIXES = {"bcc": "bcc", "moderator": "moderators", "member": "members"}


class ResolverError(RoutemailError):
    """A dynamic list could not be resolved now; try again later."""


class NoSuchList(RoutemailError):
    """The name matched a pattern but names no list (an unknown criterion)."""


@dataclass(frozen=True)
class Resolved:
    members: tuple[str, ...]
    bcc: tuple[str, ...] = ()
    moderators: tuple[str, ...] = ()


def resolve(
    resolver: str, options: Mapping[str, Any], groups: Mapping[str, str | None], base_dir: Path
) -> Resolved:
    """Look up a dynamic list; groups are the pattern's named groups for its name."""
    params = {k: v for k, v in groups.items() if k != FILTERS_GROUP}
    if resolver == "sqlite":
        return _sqlite(options, params, groups.get(FILTERS_GROUP) or "", base_dir)
    # A group that did not take part in the match fills a template as "".
    text = {k: v or "" for k, v in params.items()}
    if resolver == "command":
        return _command(options, text, base_dir)
    return _http(options, text)


# -- sqlite -----------------------------------------------------------------


def where_clause(filters: Mapping[str, str], criteria: str) -> str:
    """SQL conditions for '+a-b': only text written in the config, never the name."""
    if not CRITERIA.fullmatch(criteria):
        raise NoSuchList(f"{criteria!r} is not a series of +criterion and -criterion")
    # List names arrive lower-cased, so criteria match the config's keys in any case.
    known = {name.lower(): condition for name, condition in filters.items()}
    conditions = []
    for sign, name in CRITERION.findall(criteria):
        condition = known.get(name.lower())
        if condition is None:
            raise NoSuchList(f"unknown criterion {name!r}")
        conditions.append(f"({condition})" if sign == "+" else f"NOT ({condition})")
    return "(" + " AND ".join(conditions) + ")" if conditions else "(1=1)"


def _sqlite(
    options: Mapping[str, Any], params: dict[str, str | None], criteria: str, base_dir: Path
) -> Resolved:
    path = database_path(options, base_dir)
    if not path.is_file():
        raise ResolverError(f"database {path} does not exist")
    where = where_clause(options.get("filters", {}), criteria)
    try:
        # Read-only: a query in the config can look, never change anything.
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            if "exists" in options and not _query(db, options["exists"], where, params):
                raise NoSuchList(f"the exists query found no list for {params}")
            found = {
                key: _addresses(row[0] for row in _query(db, options[key], where, params))
                for key in QUERY_KEYS
                if key in options
            }
    except sqlite3.Error as exc:
        raise ResolverError(f"sqlite query on {path} failed: {exc}") from exc
    return Resolved(found["members"], found.get("bcc", ()), found.get("moderators", ()))


def _query(
    db: sqlite3.Connection, sql: str, where: str, params: dict[str, str | None]
) -> list[Any]:
    return db.execute(sql.replace(FILTERS_PLACEHOLDER, where), _used(sql, params)).fetchall()


def _used(sql: str, params: dict[str, str | None]) -> dict[str, str | None]:
    return {name: params.get(name) for name in SQL_PARAM.findall(sql) if name in params}


# -- command ----------------------------------------------------------------


# Secrets (MAILRECV_SECRET, ROUTEMAIL_SECRET, passwords) stay out of lookup programs.
CHILD_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "ROUTEMAIL_CONFIG", "ROUTEMAIL_DATA")


def _child_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in CHILD_ENVIRONMENT}


def _command(options: Mapping[str, Any], params: dict[str, str], base_dir: Path) -> Resolved:
    argv = [arg.format_map(params) for arg in options["command"]]
    timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    try:
        # Its own session, so a timeout kills whatever the program started too;
        # otherwise a grandchild holding stdout open would keep us waiting.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=base_dir,
            env=_child_environment(),
            start_new_session=True,
        )
    except OSError as exc:
        raise ResolverError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    with process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ResolverError(f"{argv[0]} took longer than {timeout:g}s") from exc
    if process.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise ResolverError(
            f"{argv[0]} exited with status {process.returncode}"
            + (f": {lines[-1]}" if lines else "")
        )
    found: dict[str, list[str]] = {key: [] for key in QUERY_KEYS}
    for line in out.decode("utf-8", "replace").splitlines():
        prefix, sep, rest = line.partition(":")
        key = COMMAND_PREFIXES.get(prefix.strip().lower()) if sep else None
        if key is None:
            found["members"].append(line)
        else:
            found[key].append(rest)
    return Resolved(*(_addresses(found[key]) for key in QUERY_KEYS))


# -- http -------------------------------------------------------------------


def _http(options: Mapping[str, Any], params: dict[str, str]) -> Resolved:
    quoted = {k: urllib.parse.quote(v, safe="") for k, v in params.items()}
    url = options["url"].format_map(quoted)
    timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read(MAX_HTTP_BODY))
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404:
            raise NoSuchList(f"{url} answered 404") from exc
        raise ResolverError(f"{url} answered {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise ResolverError(f"{url}: {exc}") from exc
    if isinstance(body, list):
        body = {"members": body}
    if not isinstance(body, dict) or not all(isinstance(body.get(k, []), list) for k in QUERY_KEYS):
        raise ResolverError(
            f"{url}: expected a JSON list of addresses or an object with lists "
            "members, bcc and moderators"
        )
    return Resolved(*(_addresses(body.get(k, [])) for k in QUERY_KEYS))


# -- shared -----------------------------------------------------------------


def _addresses(values: Any) -> tuple[str, ...]:
    """Valid addresses in order, once each; blanks and junk are skipped."""
    found: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and (a := addresses.normalize(value.strip())):
            found.setdefault(a, None)
    return tuple(found)


def database_path(options: Mapping[str, Any], base_dir: Path) -> Path:
    """The sqlite resolver's database; a relative path is relative to lists.toml."""
    p = Path(options["database"])
    return p if p.is_absolute() else base_dir / p


def check_options(
    resolver: str, options: Mapping[str, Any], pattern: re.Pattern[str]
) -> Iterator[tuple[str, str]]:
    """(key, problem) for every mistake in a [[dynamic]] entry's resolver options."""
    groups = set(pattern.groupindex) - {FILTERS_GROUP}
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not (isinstance(timeout, int | float) and timeout > 0):
        yield "timeout", "expected a positive number of seconds"
    if resolver == "sqlite":
        yield from _check_sqlite(options, pattern, groups)
    elif resolver == "command":
        argv = options.get("command")
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            yield "command", 'expected a list of strings, e.g. ["./lookup", "{id}"]'
        else:
            for arg in argv:
                yield from _check_fields("command", arg, groups)
    else:
        yield from _check_url(options.get("url"), groups)


def _check_sqlite(
    options: Mapping[str, Any], pattern: re.Pattern[str], groups: set[str]
) -> Iterator[tuple[str, str]]:
    if not isinstance(options.get("database"), str):
        yield "database", "expected the path of a SQLite database file"
    if "members" not in options:
        yield "members", "missing: a query whose first column is the address"
    filters = options.get("filters", {})
    if not isinstance(filters, dict) or not all(isinstance(v, str) for v in filters.values()):
        yield "filters", "expected a table of criterion = SQL condition"
    else:
        yield from _check_filters(filters, pattern, options.get("members"))
    for key in ("exists", *QUERY_KEYS):
        sql = options.get(key)
        if sql is None:
            continue
        if not isinstance(sql, str):
            yield key, "expected an SQL query"
            continue
        for name in SQL_PARAM.findall(sql):
            if name not in groups:
                yield key, f"parameter :{name} is not a named group of the pattern"


def _check_filters(
    filters: Mapping[str, str], pattern: re.Pattern[str], members: Any
) -> Iterator[tuple[str, str]]:
    captures = FILTERS_GROUP in pattern.groupindex
    if captures and not filters:
        yield "filters", f"the pattern captures (?P<{FILTERS_GROUP}>...) but no filters are set"
    if filters and not captures:
        yield "filters", f"set, but the pattern has no (?P<{FILTERS_GROUP}>...) group to use them"
    if captures and isinstance(members, str) and FILTERS_PLACEHOLDER not in members:
        # Without it a name's criteria would be ignored and everyone would get the mail.
        yield "members", f"the pattern captures criteria but the query has no {FILTERS_PLACEHOLDER}"
    seen: dict[str, str] = {}
    for name in filters:
        if not CRITERION_NAME.fullmatch(name):
            yield f"filters.{name}", "criterion names are a letter then letters, digits or _"
        elif (other := seen.setdefault(name.lower(), name)) != name:
            yield f"filters.{name}", f"same as {other!r}: criteria are matched ignoring case"


def _check_url(url: Any, groups: set[str]) -> Iterator[tuple[str, str]]:
    if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        yield "url", "expected an http(s) URL template, e.g. https://people.example.org/{team}"
        return
    fields = list(_check_fields("url", url, groups))
    if fields:
        yield from fields
        return
    authority = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    if "{" in authority:
        # Otherwise whoever picks a list name picks the server that is asked.
        yield "url", "the host cannot come from the list name; put {fields} in the path or query"
        return
    sample = url.format_map(dict.fromkeys(groups, "x"))
    if any(c.isspace() or ord(c) < 32 for c in sample):
        yield "url", "contains spaces or control characters; write them %-encoded"
        return
    parts = urllib.parse.urlsplit(sample)
    try:
        parts.port  # noqa: B018  (the property raises on a port that is not a number)
    except ValueError as exc:
        yield "url", f"bad port: {exc}"
        return
    if not parts.hostname:
        yield "url", "no host name after the scheme"


def _check_fields(key: str, template: str, groups: set[str]) -> Iterator[tuple[str, str]]:
    try:
        names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
    except ValueError as exc:
        yield key, f"bad template: {exc}"
        return
    for name in names:
        if name not in groups:
            yield key, f"{{{name}}} is not a named group of the pattern"
