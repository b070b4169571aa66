"""The on-disk queue: message files, their sidecars and the "needs processing" bit.

Layout and guarantees are documented in docs/spool-format.md. Everything
that makes a message durable happens here: temporary file, fsync, an atomic
link into QUEUE/, directory fsync; sidecar lines are appended under flock.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from routemail import sidecar
from routemail.errors import SpoolError, UnknownMessage

SIDECAR_SUFFIX = ".data"
PENDING_MODE = 0o600  # user-read bit set: needs processing
DONE_MODE = 0o200  # user-read bit clear: nothing left to do
MESSAGE_MODE = 0o640
HEADER_SCAN_LIMIT = 1 << 20  # a Message-ID beyond the first MiB of headers is not looked for
SPILL_BYTES = 1 << 20  # a message up to this size stays in memory until it is committed
STALE_TEMP_SECONDS = 24 * 3600
# Linking an O_TMPFILE by name needs /proc (linkat with AT_EMPTY_PATH needs a capability).
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_ANONYMOUS = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")


def message_id_header(head: bytes) -> bytes | None:
    """The unfolded, stripped value of the first Message-ID header, if any."""
    end = header_end(head)
    block = head[:end] if end is not None else head
    lines = block.replace(b"\r\n", b"\n").split(b"\n")
    for i, line in enumerate(lines):
        name, colon, value = line.partition(b":")
        if not colon or name.strip().lower() != b"message-id":
            continue
        parts = [value]
        for cont in lines[i + 1 :]:
            if cont[:1] not in (b" ", b"\t"):
                break
            parts.append(cont)
        unfolded = b"".join(parts).strip()
        return unfolded or None
    return None


_BLANK_LINE = re.compile(b"\n\r?\n")


def header_end(data: bytes) -> int | None:
    """Where the body starts after the header block's blank line, if it has one."""
    if data.startswith((b"\r\n", b"\n")):
        return 0
    blank = _BLANK_LINE.search(data)
    return blank.start() + 1 if blank else None


def spool_id(message_id: bytes | None, raw_digest: bytes) -> str:
    """MD5 of the Message-ID value (or the raw bytes' MD5), base64url, no padding."""
    digest = hashlib.md5(message_id).digest() if message_id else raw_digest
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def id_of_message(raw: bytes) -> str:
    return spool_id(message_id_header(raw[:HEADER_SCAN_LIMIT]), hashlib.md5(raw).digest())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Receipt:
    """What receiving a message did: its id, and whether it was already queued."""

    id: str
    duplicate: bool


@dataclass(frozen=True)
class Entry:
    """A queue entry as `routemail queue` lists it."""

    id: str
    pending: bool
    history: sidecar.History


class Spool:
    """data/maillist: QUEUE/, tmp/, log/, archive/, outbox/, LOCK."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.queue = self.root / "QUEUE"
        self.tmp = self.root / "tmp"
        self.lock_path = self.root / "LOCK"
        self.rescan_mark = self.root / "RESCAN"

    def ensure(self) -> Spool:
        """Create the directories; raise SpoolError naming the one that fails."""
        for d in (self.root, self.queue, self.tmp):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SpoolError(f"cannot create {d}: {exc.strerror}") from exc
        return self

    def writable(self) -> bool:
        return all(os.access(d, os.W_OK) for d in (self.queue, self.tmp))

    def free_bytes(self) -> int:
        """Bytes the service user may still write on the queue's filesystem (not
        counting the part reserved for root, which it cannot use)."""
        st = os.statvfs(self.queue)
        return st.f_bavail * st.f_frsize

    # -- receiving -------------------------------------------------------

    def incoming(self) -> Incoming:
        """A temporary file to stream a message into; commit() queues it."""
        return Incoming(self)

    def receive(self, raw: bytes, recipients: Iterable[str], verdicts: dict[str, str]) -> Receipt:
        with self.incoming() as inc:
            inc.write(raw)
            return inc.commit(recipients, verdicts)

    @contextlib.contextmanager
    def _queue_dir(self) -> Iterator[int]:
        fd = os.open(self.queue, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield fd
        finally:
            os.close(fd)

    def _link_message(self, queue_fd: int, temp: Path, msg_id: str) -> bool:
        """Make temp the message file; False if one was already there (kept).

        The directory is not fsync'd here: _record_receipt does it once for
        both the link and the sidecar, before the receipt is acknowledged.
        """
        try:
            # Giving dir fds makes os.link use linkat(AT_SYMLINK_FOLLOW), which an
            # unnamed file's /proc/self/fd link needs (plain link(2) would not follow it).
            os.link(temp, msg_id, src_dir_fd=queue_fd, dst_dir_fd=queue_fd, follow_symlinks=True)
        except FileExistsError:
            return False
        return True

    def _record_receipt(
        self, queue_fd: int, msg_id: str, events: list[sidecar.Event], linked: bool
    ) -> bool:
        """Append a receipt's R/V lines and set the bit; True if it is the first receipt.

        "First" is decided under the sidecar's lock (the sidecar was empty), so
        of many concurrent receipts exactly one is not a duplicate, and a
        message file a crash left without its sidecar is adopted by the retry.
        The directory fsync happens inside the lock: whoever later sees a
        non-empty sidecar knows its directory entry (and the message's) is durable.
        """
        text = "".join(e.format() for e in events).encode("utf-8")
        with self._locked(self.sidecar_path(msg_id), create=True) as fd:
            first = os.fstat(fd).st_size == 0
            os.write(fd, text)
            os.fchmod(fd, PENDING_MODE)
            os.fsync(fd)
            if first or linked:
                os.fsync(queue_fd)
        return first

    # -- sidecars ----------------------------------------------------------

    def sidecar_path(self, msg_id: str) -> Path:
        return self.queue / (msg_id + SIDECAR_SUFFIX)

    def message_path(self, msg_id: str) -> Path:
        return self.queue / msg_id

    def append(
        self,
        msg_id: str,
        events: Iterable[sidecar.Event],
        *,
        pending: bool | None = None,
        sync: bool = True,
    ) -> None:
        """Append lines in one write under the sidecar's lock; optionally set or
        clear the needs-processing bit in the same critical section."""
        text = "".join(e.format() for e in events).encode("utf-8")
        with self._locked(self.sidecar_path(msg_id), create=True) as fd:
            created = os.fstat(fd).st_size == 0
            if text:
                os.write(fd, text)
            if pending is not None:
                os.fchmod(fd, PENDING_MODE if pending else DONE_MODE)
            if sync:
                os.fsync(fd)
            # Inside the lock, so no later appender goes on before the entry is durable.
            if created:
                _fsync_dir(self.queue)

    def set_pending(self, msg_id: str, pending: bool) -> None:
        self.append(msg_id, [], pending=pending)

    def is_pending(self, msg_id: str) -> bool:
        try:
            return bool(self.sidecar_path(msg_id).stat().st_mode & stat.S_IRUSR)
        except FileNotFoundError as exc:
            raise UnknownMessage(f"no queue entry {msg_id}") from exc

    def history(self, msg_id: str) -> sidecar.History:
        return sidecar.History.of(sidecar.parse(self.read_sidecar(msg_id)))

    def read_sidecar(self, msg_id: str) -> str:
        """The sidecar's text, even while its user-read bit is clear."""
        path = self.sidecar_path(msg_id)
        if not path.exists():
            raise UnknownMessage(f"no queue entry {msg_id}: see `routemail queue`")
        if os.geteuid() == 0 or self.is_pending(msg_id):
            return path.read_text("utf-8", errors="replace")
        # The owner cannot read a mode 0200 file: lend it the bit, under the
        # same lock every mode change takes, so the flag is never lost.
        with self._locked(path, create=False) as fd:
            mode = os.fstat(fd).st_mode & 0o7777
            os.fchmod(fd, mode | stat.S_IRUSR)
            try:
                return path.read_text("utf-8", errors="replace")
            finally:
                os.fchmod(fd, mode)

    @contextlib.contextmanager
    def _locked(self, path: Path, *, create: bool) -> Iterator[int]:
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0)
        try:
            fd = os.open(path, flags, PENDING_MODE)
        except FileNotFoundError as exc:
            raise UnknownMessage(f"no queue entry {path.stem}") from exc
        except OSError as exc:
            raise SpoolError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    # -- scanning --------------------------------------------------------

    def stat_entries(self) -> list[tuple[str, float, bool]]:
        """(id, sidecar mtime, pending) for every entry, oldest first, without reading
        any sidecar: one scandir of QUEUE/."""
        found = []
        with os.scandir(self.queue) as it:
            for e in it:
                if e.name.endswith(SIDECAR_SUFFIX):
                    st = e.stat()
                    pending = bool(st.st_mode & stat.S_IRUSR)
                    found.append((e.name[: -len(SIDECAR_SUFFIX)], st.st_mtime, pending))
        return sorted(found, key=lambda entry: (entry[1], entry[0]))

    def ids(self) -> list[str]:
        """Every queue entry with a sidecar, oldest first."""
        return [msg_id for msg_id, _, _ in self.stat_entries()]

    def pending_ids(self) -> list[str]:
        """Entries whose sidecar has the user-read bit: they need processing."""
        return [msg_id for msg_id, _, pending in self.stat_entries() if pending]

    def entries(self) -> list[Entry]:
        out = []
        for msg_id in self.ids():
            with contextlib.suppress(UnknownMessage):
                out.append(Entry(msg_id, self.is_pending(msg_id), self.history(msg_id)))
        return out

    def read_message(self, msg_id: str) -> bytes:
        try:
            return self.message_path(msg_id).read_bytes()
        except FileNotFoundError as exc:
            raise UnknownMessage(f"queue entry {msg_id} has no message file") from exc

    def resolve_id(self, prefix: str) -> str:
        """A full id from a unique prefix, as people type them."""
        if self.sidecar_path(prefix).exists():
            return prefix
        matches = [i for i in self.ids() if i.startswith(prefix)] if prefix else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownMessage(f"no queue entry {prefix!r}: see `routemail queue`")
        raise UnknownMessage(f"{prefix!r} matches {len(matches)} entries; give more of the id")

    # -- housekeeping ----------------------------------------------------

    def remove(self, msg_id: str) -> None:
        for path in (self.message_path(msg_id), self.sidecar_path(msg_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def archive(self, msg_id: str, listname: str) -> None:
        """Keep a copy under archive/<list>/ (a hard link: no bytes copied)."""
        target = self.root / "archive" / listname
        target.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(self.message_path(msg_id), target / msg_id)

    def clean_temp(self, now: float | None = None) -> int:
        """Remove temporary files a killed receiver left behind."""
        limit = (now or time.time()) - STALE_TEMP_SECONDS
        removed = 0
        with os.scandir(self.tmp) as it:
            for e in it:
                if e.stat().st_mtime < limit:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(e.path)
                        removed += 1
        return removed


class Incoming:
    """A message being received: hashed as it streams in, held in memory while
    small, and written to an unnamed file once it grows or is committed.

    A refused request (bad signature, too large) therefore costs no file at
    all. On Linux the file is an O_TMPFILE in QUEUE/ (no name until commit()
    links it, so a killed receiver leaves nothing behind); elsewhere a named
    file in tmp/. Nothing is visible in QUEUE/ until commit() has made the
    bytes durable.
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.path: Path | None = None
        self.file: BinaryIO | None = None
        self.buffer = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.head = b""
        # The raw bytes' MD5 names a message without a Message-ID; once the
        # header block is complete and has one, it is no longer needed.
        self._md5: hashlib._Hash | None = hashlib.md5()
        self._message_id: bytes | None = None
        self._head_final = False

    def __enter__(self) -> Incoming:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def write(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if not self._head_final:
            self._grow_head(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)
        self.size += len(chunk)
        if self.file is None and self.size <= SPILL_BYTES:
            self.buffer += chunk
            return
        self._spill()
        self._write_file(chunk)

    def _grow_head(self, chunk: bytes) -> None:
        self.head += chunk[: HEADER_SCAN_LIMIT - len(self.head)]
        if header_end(self.head) is None and len(self.head) < HEADER_SCAN_LIMIT:
            return
        self._head_final = True
        self._message_id = message_id_header(self.head)
        if self._message_id is not None:
            self._md5 = None

    @property
    def id(self) -> str:
        message_id = self._message_id if self._head_final else message_id_header(self.head)
        if message_id is not None:
            return spool_id(message_id, b"")
        assert self._md5 is not None
        return spool_id(None, self._md5.digest())

    def _spill(self) -> None:
        """Move what is buffered to the file, opening it first if need be."""
        if self.file is None:
            self.file = os.fdopen(self._create_file(), "wb")
        if self.buffer:
            self._write_file(self.buffer)
            self.buffer = bytearray()

    def _write_file(self, data: bytes | bytearray) -> None:
        assert self.file is not None
        try:
            self.file.write(data)
        except OSError as exc:
            raise SpoolError(f"cannot write the message: {exc.strerror}") from exc

    def _create_file(self) -> int:
        """A file to hold the message; a missing spool directory is created first."""
        try:
            return self._open_file()
        except FileNotFoundError:
            self.spool.ensure()
        try:
            return self._open_file()
        except FileNotFoundError as exc:
            raise SpoolError(f"cannot write to {self.spool.queue}: {exc.strerror}") from exc

    def _open_file(self) -> int:
        fd = self._open_anonymous() if _ANONYMOUS else None
        if fd is not None:
            return fd
        self.path = self.spool.tmp / f"{int(time.time())}.{os.getpid()}.{secrets.token_hex(8)}"
        try:
            return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MESSAGE_MODE)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SpoolError(f"cannot write to {self.spool.tmp}: {exc.strerror}") from exc

    def _open_anonymous(self) -> int | None:
        """An unnamed file in QUEUE/, or None where the filesystem has no O_TMPFILE."""
        try:
            return os.open(self.spool.queue, os.O_WRONLY | _O_TMPFILE, MESSAGE_MODE)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return None
            raise SpoolError(f"cannot write to {self.spool.queue}: {exc.strerror}") from exc

    def commit(self, recipients: Iterable[str], verdicts: dict[str, str]) -> Receipt:
        """Make the message durable in QUEUE/ and record this receipt."""
        return self._commit(
            [sidecar.event(sidecar.RECEIVED, *recipients), sidecar.verdicts_event(verdicts)]
        )

    def commit_outgoing(self, recipients: Iterable[str]) -> Receipt:
        """Queue a message of our own (transactional mail) for these recipients."""
        return self._commit([sidecar.event(sidecar.OUTGOING, *recipients)])

    def _commit(self, events: list[sidecar.Event]) -> Receipt:
        try:
            self._spill()
            assert self.file is not None
            self.file.flush()
            os.fsync(self.file.fileno())
            msg_id = self.id
            # An unnamed file is linked through its descriptor, so it stays open until then.
            source = self.path or Path(f"/proc/self/fd/{self.file.fileno()}")
            with self.spool._queue_dir() as queue_fd:
                linked = self.spool._link_message(queue_fd, source, msg_id)
                self.file.close()
                first = self.spool._record_receipt(queue_fd, msg_id, events, linked)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise SpoolError(f"cannot write to {self.spool.queue}: {exc.strerror}") from exc
            raise SpoolError(f"cannot queue message: {exc}") from exc
        return Receipt(msg_id, duplicate=not first)

    def discard(self) -> None:
        self.buffer = bytearray()
        if self.file is not None and not self.file.closed:
            self.file.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
