"""Style-preserving edits of lists.toml: add or remove a list, add or remove a
member, change a list's settings.

People and the API edit the same file. Each edit takes a file lock, re-reads
the file, changes only the keys it must (comments and layout elsewhere are
kept by tomlkit), validates the result with routemail.config.parse, and
replaces the file atomically (temporary file, fsync, rename, directory fsync).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tomllib
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

import tomlkit
from filelock import FileLock, Timeout
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Array, Table

from routemail import addresses, config
from routemail.errors import ConfigError, RoutemailError

LOCK_TIMEOUT = 30.0


class ListEditError(RoutemailError):
    """lists.toml cannot be changed as asked."""


class NoSuchList(ListEditError):
    """The list is not defined in lists.toml."""


class ListExists(ListEditError):
    """A list of that name is already defined."""


def lock_for(path: Path) -> FileLock:
    return FileLock(str(path.with_name(path.name + ".lock")), timeout=LOCK_TIMEOUT)


def add_list(
    path: Path, name: str, administrator: str, description: str = "", posters: str = "members"
) -> None:
    """A new [lists.NAME] with the administrator as moderator and member, placed after
    the last [lists.*] table (before the comments that introduce what follows it)."""

    def change(doc: tomlkit.TOMLDocument) -> bool:
        lists = doc.get("lists")
        if lists is not None and not isinstance(lists, MutableMapping):
            raise ListEditError(f"{path}: lists is not a table; fix the file by hand")
        if lists is not None and any(str(key).lower() == name for key in lists):
            raise ListExists(f"a list named {name!r} already exists")
        return True

    table = tomlkit.table()
    if description:
        table.add("description", description)
    table.add("moderators", [administrator])
    table.add("posters", posters)
    table.add("members", [administrator])
    block = tomlkit.dumps({"lists": {name: table}}).lstrip("\n")
    # tomlkit writes [lists.NAME], or for names needing quotes [lists."a+b"].
    _edit(path, change, insert=(block, name))


def remove_list(path: Path, name: str) -> None:
    """Remove [lists.NAME]: its header and keys, not the comments introducing the
    table after it."""

    def change(doc: tomlkit.TOMLDocument) -> bool:
        _list_table(doc, name, path)
        return True

    _edit(path, change, remove=name)


def set_keys(path: Path, name: str, values: Mapping[str, str | list[str] | None]) -> list[str]:
    """Set the list's keys to these values (None or "" removes the key, leaving the
    default); the keys that changed."""
    changed: list[str] = []

    def change(doc: tomlkit.TOMLDocument) -> bool:
        table = _list_table(doc, name, path)
        for key, value in values.items():
            current = table.get(key)
            if value is None or value == "":
                if key in table:
                    del table[key]
                    changed.append(key)
            elif current is None or current.unwrap() != value:
                item = value if isinstance(value, str) else _array(value)
                if current is None:
                    _add_before_trailing_comments(table, key, item)
                else:
                    table[key] = item
                changed.append(key)
        return bool(changed)

    _edit(path, change)
    return changed


def _add_before_trailing_comments(table: Table, key: str, item: object) -> None:
    """Add key after the table's last key: tomlkit counts the comments (and blank lines)
    that introduce the next table as this one's, and would add it below them."""
    body = table.value.body
    trailing = []
    while body and body[-1][0] is None:
        trailing.append(body.pop())
    table.add(key, item)
    body.extend(reversed(trailing))


def _array(values: list[str]) -> Array:
    array = tomlkit.array()
    array.extend(values)
    if len(values) > 3:
        array.multiline(True)
    return array


def add_member(path: Path, name: str, address: str) -> bool:
    """Add address to the list's members; False if it was there already."""

    def change(doc: tomlkit.TOMLDocument) -> bool:
        table = _list_table(doc, name, path)
        members = table.get("members")
        if members is None:
            table.add("members", [address])
            return True
        if not isinstance(members, Array):
            raise ListEditError(f"{path}: lists.{name}.members is not a list; fix it by hand")
        if any(addresses.same(str(m), address) for m in members):
            return False
        members.append(address)
        return True

    return _edit(path, change)


def remove_member(path: Path, name: str, address: str) -> bool:
    """Remove address from the list's members, whatever its case; False if it was not there."""

    def change(doc: tomlkit.TOMLDocument) -> bool:
        table = _list_table(doc, name, path)
        members = table.get("members")
        if not isinstance(members, Array):
            return False
        found = [i for i, m in enumerate(members) if addresses.same(str(m), address)]
        for i in reversed(found):
            del members[i]
        return bool(found)

    return _edit(path, change)


def _list_table(doc: tomlkit.TOMLDocument, name: str, path: Path) -> Table:
    # [lists.X] tables placed after other tables come back as a proxy, not a Table.
    lists = doc.get("lists")
    if isinstance(lists, MutableMapping):
        for key, value in lists.items():
            if str(key).lower() == name and isinstance(value, Table):
                return value
    raise NoSuchList(f"no list named {name!r} in {path}")


def _edit(
    path: Path,
    change: Callable[[tomlkit.TOMLDocument], bool],
    insert: tuple[str, str] | None = None,
    remove: str | None = None,
) -> bool:
    """Apply change under the lock (or insert or remove a list's table text); whether
    the file changed."""
    try:
        with lock_for(path):
            text = path.read_text("utf-8")
            try:
                doc = tomlkit.parse(text)
            except TOMLKitError as exc:
                raise ListEditError(f"{path}: not valid TOML ({exc}); fix it by hand") from exc
            if not change(doc):
                return False
            if insert is not None:
                new_text = _with_list(text, *insert)
            elif remove is not None:
                new_text = _without_list(text, remove)
            else:
                new_text = tomlkit.dumps(doc)
            try:
                config.parse(new_text, path)
            except ConfigError as exc:
                raise ListEditError(f"the change would make {path.name} invalid: {exc}") from exc
            _replace(path, new_text)
            return True
    except Timeout as exc:
        raise ListEditError(f"{path} is locked by another edit; retry") from exc
    except OSError as exc:
        raise ListEditError(f"{path}: cannot write: {exc.strerror or exc}") from exc


_HEADER = re.compile(r"^[ \t]*\[")  # a table header line: [x] or [[x]]
_LISTS_HEADER = re.compile(r"^[ \t]*\[[ \t]*lists[ \t]*[.\]]")


def _with_list(text: str, block: str, name: str) -> str:
    """text with a new list's table block on lines of its own, after the last
    [lists.*] table's keys (or, with none, before the first table that follows the
    settings), blank lines around it. Checked: the result must hold what text held
    plus the list, else the block goes at the end of the file."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    at = _insertion_line(lines)
    before, after = lines[:at], lines[at:]
    while before and not before[-1].strip():
        before.pop()
    head = "".join(before) + ("\n" if before else "")
    tail = "\n" + "".join(after).lstrip("\n") if after else ""
    result = head + block.rstrip("\n") + "\n" + tail
    expected = tomllib.loads(text)
    expected.setdefault("lists", {})[name] = tomllib.loads(block)["lists"][name]
    try:
        if tomllib.loads(result) == expected:
            return result
    except tomllib.TOMLDecodeError:
        pass
    return text.rstrip("\n") + "\n\n" + block  # a layout the scan misread: play safe


def _without_list(text: str, name: str) -> str:
    """text without the [lists.NAME] table's lines; checked as _with_list is."""
    lines = text.splitlines(keepends=True)
    expected = tomllib.loads(text)
    del expected["lists"][next(k for k in expected["lists"] if k.lower() == name)]
    for start, line in enumerate(lines):
        if _HEADER.match(line) and _header_names(line, name):
            end = _table_end(lines, start)
            result = "".join(lines[:start]) + "".join(lines[end:]).lstrip("\n")
            try:
                if tomllib.loads(result) == expected:
                    return result
            except tomllib.TOMLDecodeError:
                pass
    raise ListEditError(f"cannot find where [lists.{name}] ends in the file; remove it by hand")


def _header_names(line: str, name: str) -> bool:
    """Whether a table header line is [lists.NAME] (bare or quoted key)."""
    try:
        parsed = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return False
    lists = parsed.get("lists")
    return isinstance(lists, dict) and [k.lower() for k in lists] == [name]


def _insertion_line(lines: list[str]) -> int:
    """The index of the line before which a new [lists.NAME] goes."""
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    lists = [i for i in headers if _LISTS_HEADER.match(lines[i])]
    if lists:
        return _table_end(lines, lists[-1])
    # No list yet: after the site's settings, before [[dynamic]] or the end.
    dynamic = [i for i in headers if lines[i].lstrip().startswith("[[")]
    return _back_over_comments(lines, dynamic[0] if dynamic else len(lines))


def _table_end(lines: list[str], start: int) -> int:
    """The index just past the last key line of the table whose header is at start."""
    following = [i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])]
    return _back_over_comments(lines, following[0] if following else len(lines))


def _back_over_comments(lines: list[str], end: int) -> int:
    # Comments and blank lines just above a table introduce it: stay above them.
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return end


def _replace(path: Path, text: str) -> None:
    """Write text next to path, fsync, rename over path, fsync the directory."""
    mode = stat.S_IMODE(path.stat().st_mode)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
