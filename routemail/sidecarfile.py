"""A sidecar file open under its lock: whole-line appends, or none at all.

Every writer of a sidecar goes through `locked()`. An append writes all its
bytes or fails, and on failure (a full disk, a quota, a file size limit, an
I/O error at fsync) the file is cut back to where it ended, so a line is
never left torn by a writer that lives on to answer. A torn last line left
by a writer that died (a crash mid-write) is cut off by the next writer
before it appends, so two lines are never glued into one. Readers skip a
last line without its newline (sidecar.parse).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from routemail.errors import SpoolError, UnknownMessage

PENDING_MODE = 0o600  # user-read bit set: needs processing
DONE_MODE = 0o200  # user-read bit clear: nothing left to do
_TAIL_BLOCK = 4096


class LockedSidecar:
    """One sidecar, locked. `fd` reads and appends; the lock and any lent bit go
    with the context manager that made it."""

    def __init__(self, path: Path, fd: int, mode: int) -> None:
        self.path = path
        self.fd = fd
        self.mode = mode  # the mode to leave behind
        self.length = self._complete_length()

    @property
    def empty(self) -> bool:
        return self.length == 0

    def _complete_length(self) -> int:
        """The length up to the last newline, cutting off a torn last line if there is one."""
        size = os.fstat(self.fd).st_size
        end = size
        while end > 0:
            start = max(0, end - _TAIL_BLOCK)
            block = os.pread(self.fd, end - start, start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end != size:
            os.ftruncate(self.fd, end)
        return end

    def first_line(self, limit: int = 256) -> bytes:
        return os.pread(self.fd, min(limit, self.length), 0).partition(b"\n")[0]

    def read(self) -> bytes:
        return os.pread(self.fd, self.length, 0)

    def append(self, data: bytes, *, sync: bool = True, mode: int | None = None) -> None:
        """Append whole lines (and set the mode): every byte, or, cut back and raised, none."""
        before = self.length
        try:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
            self.length += len(data)
            if mode is not None:
                self.set_mode(mode)
            if sync:
                os.fsync(self.fd)
        except OSError:
            self.cut(before)
            raise

    def cut(self, length: int) -> None:
        """Cut the file back to length (where a line ended), as well as can be."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, length)
        self.length = length

    def set_mode(self, mode: int) -> None:
        os.fchmod(self.fd, mode)
        self.mode = mode


@contextlib.contextmanager
def locked(path: Path, *, create: bool) -> Iterator[LockedSidecar]:
    """The sidecar under flock(LOCK_EX), open for reading and appending.

    Its owner cannot open a 0200 file for reading, so it is lent the user-read
    bit while locked (and given back unless set_mode chose another mode).
    The lock is taken on the file the name still points to: a sidecar removed
    while we waited for its lock is never written to.
    """
    creating = os.O_CREAT if create else 0
    while True:
        fd, readable = _open_to_append(path, creating)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(path, fd):
                if readable:
                    yield LockedSidecar(path, fd, stat.S_IMODE(os.fstat(fd).st_mode))
                else:
                    with _lent_read_bit(path, fd) as car:
                        yield car
                return
        finally:
            os.close(fd)
        if not create:
            raise UnknownMessage(f"no queue entry {path.stem}")


@contextlib.contextmanager
def _lent_read_bit(path: Path, lock_fd: int) -> Iterator[LockedSidecar]:
    mode = stat.S_IMODE(os.fstat(lock_fd).st_mode)
    os.fchmod(lock_fd, mode | stat.S_IRUSR)
    restore = mode
    try:
        fd = _open(path, os.O_RDWR | os.O_APPEND)
        try:
            car = LockedSidecar(path, fd, mode)
            yield car
            restore = car.mode
        finally:
            os.close(fd)
    finally:
        os.fchmod(lock_fd, restore)


def _open_to_append(path: Path, creating: int) -> tuple[int, bool]:
    """(fd, readable): read-write if we may, else write-only (a 0200 file, not root)."""
    try:
        return _open(path, os.O_RDWR | os.O_APPEND | creating), True
    except SpoolError as exc:
        if not isinstance(exc.__cause__, PermissionError):
            raise
    return _open(path, os.O_WRONLY | os.O_APPEND | creating), False


def _same_file(path: Path, fd: int) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _open(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags, PENDING_MODE)
    except FileNotFoundError as exc:
        raise UnknownMessage(f"no queue entry {path.stem}") from exc
    except OSError as exc:
        raise SpoolError(f"cannot open {path}: {exc.strerror}") from exc
