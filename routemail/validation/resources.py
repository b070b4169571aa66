"""What `routemail check` tries beyond the file: each dynamic list's database opens
read-only and its queries compile, and each lookup program exists and may run.

These are the failures that would otherwise show only when mail arrives for
the list (the message then waits in the queue for a fix).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from routemail.config import DynamicRule
from routemail.resolvers import (
    FILTERS_PLACEHOLDER,
    QUERY_KEYS,
    SQL_PARAM,
    NoSuchList,
    database_path,
    where_clause,
)
from routemail.validation.checker import Checker


def check_resources(v: Checker, rules: Iterable[DynamicRule], base_dir: Path) -> None:
    """Record what will fail; an entry with a mistake in the file is not tried."""
    mistaken = {p.key.split(".", 1)[0] for p in v.problems}
    for rule in rules:
        prefix = f"dynamic[{rule.index}]"
        if prefix in mistaken:
            continue
        if rule.resolver == "sqlite":
            for key, message in _sqlite(rule.options, base_dir):
                v.problem(f"{prefix}.{key}", message)
        elif rule.resolver == "command":
            for key, message in _command(rule.options, base_dir):
                v.problem(f"{prefix}.{key}", message)


def _sqlite(options: Mapping[str, Any], base_dir: Path) -> list[tuple[str, str]]:
    if not isinstance(options.get("database"), str):
        return []  # already reported
    path = database_path(options, base_dir)
    if path.exists() and not path.is_file():
        return [("database", f"{path} is not a file; name the database file itself")]
    if not path.is_file():
        return [("database", f"{path} does not exist; build it or correct the path")]
    filters = options.get("filters", {})
    try:
        # Every criterion at once, so each condition written in [dynamic.filters] compiles too.
        where = where_clause(filters, "".join(f"+{name}" for name in filters))
    except NoSuchList:
        return []  # a criterion name already reported
    problems = []
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA schema_version")  # fails here for a file that is no database
            for key in ("exists", *QUERY_KEYS):
                sql = options.get(key)
                if not isinstance(sql, str):
                    continue
                # EXPLAIN prepares the statement (tables, columns, syntax) without running it.
                params = dict.fromkeys(SQL_PARAM.findall(sql))
                try:
                    db.execute("EXPLAIN " + sql.replace(FILTERS_PLACEHOLDER, where), params)
                except sqlite3.Error as exc:
                    problems.append((key, f"does not compile against {path}: {exc}"))
    except sqlite3.Error as exc:
        return [("database", f"{path} cannot be opened read-only: {exc}")]
    return problems


def _command(options: Mapping[str, Any], base_dir: Path) -> list[tuple[str, str]]:
    argv = options.get("command")
    if not (isinstance(argv, list) and argv and isinstance(argv[0], str)) or "{" in argv[0]:
        return []  # malformed (already reported) or named by the list itself
    program = argv[0]
    if "/" not in program:
        if shutil.which(program) is None:
            return [("command", f"{program} is not found on PATH ({os.environ.get('PATH', '')})")]
        return []
    # The resolver runs the program from the directory holding lists.toml.
    path = Path(program) if os.path.isabs(program) else base_dir / program
    if not path.exists():
        return [("command", f"{path} does not exist")]
    if not path.is_file() or not os.access(path, os.X_OK):
        return [("command", f"{path} is not an executable file; chmod +x it")]
    return []
