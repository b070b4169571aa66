"""The validator's toolkit: typed reads of TOML values that collect every problem."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from routemail import addresses
from routemail.errors import Problem
from routemail.validation.keylines import key_lines

Check = Callable[[Any], str | None]


class Checker:
    """Reads values out of the parsed file, recording each mistake with its line."""

    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.lines = key_lines(text)
        self.problems: list[Problem] = []

    def line_of(self, key: str) -> int | None:
        """The line of key, or of the nearest enclosing key or table that is written."""
        probe = key
        line = self.lines.get(probe)
        while line is None and "." in probe:
            probe = probe.rsplit(".", 1)[0]
            line = self.lines.get(probe)
        return line

    def problem(self, key: str, message: str, at: str | None = None) -> None:
        """Record a problem with key; at names a more precise place (an array element)."""
        line = (self.lines.get(at) if at else None) or self.line_of(key)
        self.problems.append(Problem(self.path.name, line, key, message))

    def unknown_keys(self, table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                close = ", ".join(sorted(allowed))
                where = f"{prefix}.{key}" if prefix else key
                self.problem(where, f"unknown key; expected one of {close}")

    def table(self, data: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem(f"{prefix}{key}", "expected a table")
            return {}
        return value

    def get(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        kind: type | tuple[type, ...],
        default: Any,
        check: Check | None = None,
    ) -> Any:
        if key not in table:
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are not numbers, though Python's bool is an int.
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            names = " or ".join(type_name(k) for k in kinds)
            self.problem(f"{prefix}.{key}", f"expected {names}, got {value!r}")
            return default
        if check and (message := check(value)):
            self.problem(f"{prefix}.{key}", message)
            return default
        return value

    def address(self, value: Any, key: str, at: str | None = None) -> str | None:
        norm = normalize_address(value)
        if norm is None:
            self.problem(key, f"{value!r} is not an email address", at)
        return norm

    def addresses(self, table: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
        values = self.get(table, key, prefix, list, [])
        out = []
        for i, v in enumerate(values):
            where = f"{prefix}.{key}"
            if (a := self.address(v, where, f"{where}[{i}]")) is not None:
                out.append(a)
        return tuple(dict.fromkeys(out))

    def choice(self, options: tuple[str, ...]) -> Check:
        return lambda v: None if v in options else f"expected {either(options)}, got {v!r}"


def positive(value: Any) -> str | None:
    return None if value > 0 else "expected a positive number"


def normalize_address(value: Any) -> str | None:
    return addresses.normalize(value) if isinstance(value, str) else None


def type_name(kind: type) -> str:
    return {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }.get(kind, kind.__name__)


def either(options: Any) -> str:
    """'a, b or c'."""
    items = list(options)
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]
