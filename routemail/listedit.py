"""Style-preserving edits of lists.toml: add a list, add or remove a member.

People and the API edit the same file. Each edit takes a file lock, re-reads
the file, changes only the keys it must (comments and layout elsewhere are
kept by tomlkit), validates the result with routemail.config.parse, and
replaces the file atomically (temporary file, fsync, rename, directory fsync).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, MutableMapping
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
    """A new [lists.NAME] with the administrator as moderator and member."""

    def change(doc: tomlkit.TOMLDocument) -> bool:
        lists = doc.get("lists")
        if lists is None:
            lists = tomlkit.table(is_super_table=True)
            doc.add("lists", lists)
        if not isinstance(lists, MutableMapping):
            raise ListEditError(f"{path}: lists is not a table; fix the file by hand")
        if any(str(key).lower() == name for key in lists):
            raise ListExists(f"a list named {name!r} already exists")
        table = tomlkit.table()
        if description:
            table.add("description", description)
        table.add("moderators", [administrator])
        table.add("posters", posters)
        table.add("members", [administrator])
        lists[name] = table
        return True

    _edit(path, change)


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


def _edit(path: Path, change: Callable[[tomlkit.TOMLDocument], bool]) -> bool:
    """Apply change under the lock; whether the file changed."""
    try:
        with lock_for(path):
            text = path.read_text("utf-8")
            try:
                doc = tomlkit.parse(text)
            except TOMLKitError as exc:
                raise ListEditError(f"{path}: not valid TOML ({exc}); fix it by hand") from exc
            if not change(doc):
                return False
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
