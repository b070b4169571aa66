"""Where each key of a TOML text is written, so a problem can name its line.

Tables, keys, and each element of an array value are located; arrays of
tables are named by index (dynamic[2]) and array elements likewise
(lists.volunteers.members[3]). Lines inside multi-line strings and arrays
are text, not keys: a footer line such as "[volunteers] list" is no table.
"""

from __future__ import annotations

import re

_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def key_lines(text: str) -> dict[str, int]:
    """Dotted key path (arrays of tables and array elements as name[i]) → line number."""
    lines: dict[str, int] = {}
    table = ""
    arrays: dict[str, int] = {}
    value: _Value | None = None
    # TOML lines end at \n only; str.splitlines would also split inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if value is not None:
            value.feed(line, number)
        elif m := _TABLE.match(line):
            table = _table_name(_dotted(m.group(2)), m.group(1) == "[[", arrays)
            lines.setdefault(table, number)
        elif m := _KEY.match(line):
            parts = _dotted(m.group(1))
            for i in range(1, len(parts) + 1):
                key = ".".join(parts[:i])
                lines.setdefault(f"{table}.{key}" if table else key, number)
            value = _Value()
            value.feed(line[m.end() :], number)
        if value is not None and value.closed:
            for i, element_line in enumerate(value.elements):
                lines.setdefault(f"{table}.{key}[{i}]" if table else f"{key}[{i}]", element_line)
            value = None
    return lines


def _dotted(name: str) -> list[str]:
    return [p.strip().strip("\"'") for p in name.split(".")]


def _table_name(parts: list[str], array: bool, arrays: dict[str, int]) -> str:
    """The header's path, each array of tables along it indexed by its latest entry."""
    name = ""
    for i, part in enumerate(parts):
        name = f"{name}.{part}" if name else part
        if array and i == len(parts) - 1:
            arrays[name] = arrays.get(name, -1) + 1
        if name in arrays:
            name = f"{name}[{arrays[name]}]"
    return name


class _Value:
    """Follows one value across lines: open brackets, an open multi-line string,
    and the line where each element of a top-level array starts."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote = ""
        self.array = False
        self.expect_element = False
        self.elements: list[int] = []

    @property
    def closed(self) -> bool:
        return not self.depth and not self.quote

    def feed(self, text: str, number: int) -> None:
        i = 0
        while i < len(text):
            if self.quote:
                i = self._in_string(text, i)
                continue
            c = text[i]
            if c == "#":
                break
            if self.expect_element and not c.isspace() and c not in ",]":
                self.elements.append(number)
                self.expect_element = False
            if text.startswith(('"""', "'''"), i):
                self.quote = text[i : i + 3]
                i += 3
                continue
            if c in "\"'":
                self.quote = c
            elif c in "[{":
                self.depth += 1
                if self.depth == 1 and c == "[":
                    self.array = self.expect_element = True
            elif c in "]}":
                self.depth = max(self.depth - 1, 0)
            elif c == "," and self.depth == 1 and self.array:
                self.expect_element = True
            i += 1
        # A one-line string cannot continue on the next line.
        if len(self.quote) == 1:
            self.quote = ""

    def _in_string(self, text: str, i: int) -> int:
        """The index after text[i] inside the open string, closing it at its quote."""
        if self.quote[0] == '"' and text[i] == "\\":
            return i + 2
        if text.startswith(self.quote, i):
            end = i + len(self.quote)
            self.quote = ""
            return end
        return i + 1
