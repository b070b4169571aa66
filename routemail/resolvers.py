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
import re
import sqlite3
import string
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routemail import addresses
from routemail.errors import RoutemailError

FILTERS_GROUP = "filters"
CRITERION = re.compile(r"([-+])([A-Za-z][A-Za-z0-9_]*)")
SQL_PARAM = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")
QUERY_KEYS = ("members", "bcc", "moderators")
OPTION_KEYS: dict[str, set[str]] = {
    "sqlite": {"database", "members", "bcc", "moderators", "filters"},
    "command": {"command", "timeout"},
    "http": {"url", "timeout"},
}
DEFAULT_TIMEOUT = 10.0


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
    resolver: str, options: Mapping[str, Any], groups: Mapping[str, str], base_dir: Path
) -> Resolved:
    params = {k: v for k, v in groups.items() if k != FILTERS_GROUP and v is not None}
    if resolver == "sqlite":
        return _sqlite(options, params, groups.get(FILTERS_GROUP) or "", base_dir)
    if resolver == "command":
        return _command(options, params, base_dir)
    return _http(options, params)


# -- sqlite -----------------------------------------------------------------


def _where(filters: Mapping[str, str], criteria: str) -> str:
    """SQL conditions for '+a-b': only text written in the config, never the name."""
    conditions = []
    for sign, name in CRITERION.findall(criteria):
        condition = filters.get(name)
        if condition is None:
            raise NoSuchList(f"unknown criterion {name!r}")
        conditions.append(f"({condition})" if sign == "+" else f"NOT ({condition})")
    return " AND ".join(conditions) or "1=1"


def _sqlite(
    options: Mapping[str, Any], params: dict[str, str], criteria: str, base_dir: Path
) -> Resolved:
    path = _path(options["database"], base_dir)
    if not path.exists():
        raise ResolverError(f"database {path} does not exist")
    where = _where(options.get("filters", {}), criteria)
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            found = {
                key: _addresses(
                    row[0]
                    for row in db.execute(
                        options[key].replace("{filters}", where), _used(options[key], params)
                    )
                )
                for key in QUERY_KEYS
                if key in options
            }
    except sqlite3.Error as exc:
        raise ResolverError(f"sqlite query failed: {exc}") from exc
    return Resolved(found["members"], found.get("bcc", ()), found.get("moderators", ()))


def _used(sql: str, params: dict[str, str]) -> dict[str, str]:
    return {name: params[name] for name in SQL_PARAM.findall(sql) if name in params}


# -- command ----------------------------------------------------------------


def _command(options: Mapping[str, Any], params: dict[str, str], base_dir: Path) -> Resolved:
    argv = [arg.format_map(params) for arg in options["command"]]
    timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=base_dir, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ResolverError(f"{argv[0]} took longer than {timeout:g}s") from exc
    except OSError as exc:
        raise ResolverError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ResolverError(
            f"{argv[0]} exited with status {done.returncode}" + (f": {err[-1]}" if err else "")
        )
    members: list[str] = []
    bcc: list[str] = []
    moderators: list[str] = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        kind, sep, rest = line.partition(":")
        target = {"bcc": bcc, "moderator": moderators}.get(kind.strip().lower()) if sep else None
        (target if target is not None else members).append(rest if target is not None else line)
    return Resolved(_addresses(members), _addresses(bcc), _addresses(moderators))


# -- http -------------------------------------------------------------------


def _http(options: Mapping[str, Any], params: dict[str, str]) -> Resolved:
    quoted = {k: urllib.parse.quote(v, safe="") for k, v in params.items()}
    url = options["url"].format_map(quoted)
    timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read(10 * 1024 * 1024))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NoSuchList(f"{url} answered 404") from exc
        raise ResolverError(f"{url} answered {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise ResolverError(f"{url}: {exc}") from exc
    if isinstance(body, list):
        body = {"members": body}
    if not isinstance(body, dict) or not all(isinstance(body.get(k, []), list) for k in QUERY_KEYS):
        raise ResolverError(f"{url}: expected a JSON list of addresses")
    return Resolved(*(_addresses(body.get(k, [])) for k in QUERY_KEYS))


# -- shared -----------------------------------------------------------------


def _addresses(values: Any) -> tuple[str, ...]:
    """Valid addresses in order, once each; blanks and junk are skipped."""
    found: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and (a := addresses.normalize(value.strip())):
            found.setdefault(a, None)
    return tuple(found)


def _path(value: str, base_dir: Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base_dir / p


def check_options(
    resolver: str, options: Mapping[str, Any], pattern: re.Pattern[str]
) -> Iterator[tuple[str, str]]:
    """(key, problem) for every mistake in a [[dynamic]] entry's resolver options."""
    groups = set(pattern.groupindex) - {FILTERS_GROUP}
    if "timeout" in options and not (
        isinstance(options["timeout"], int | float) and options["timeout"] > 0
    ):
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
        url = options.get("url")
        if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            yield "url", "expected an http(s) URL template"
        else:
            yield from _check_fields("url", url, groups)


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
    elif FILTERS_GROUP in pattern.groupindex and not filters:
        yield "filters", f"the pattern captures (?P<{FILTERS_GROUP}>...) but no filters are set"
    for key in QUERY_KEYS:
        sql = options.get(key)
        if sql is None:
            continue
        if not isinstance(sql, str):
            yield key, "expected an SQL query"
            continue
        for name in SQL_PARAM.findall(sql):
            if name not in groups:
                yield key, f"parameter :{name} is not a named group of the pattern"


def _check_fields(key: str, template: str, groups: set[str]) -> Iterator[tuple[str, str]]:
    try:
        names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
    except ValueError as exc:
        yield key, f"bad template: {exc}"
        return
    for name in names:
        if name not in groups:
            yield key, f"{{{name}}} is not a named group of the pattern"
