"""Receiving a message into the queue: streamed in, made durable, recorded.

What a 2xx from the receiver promises is in docs/spool-format.md
("Durability"); which entry a receipt joins is the rule of
routemail/identity.py ("Same message").
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from routemail import sidecar, sidecarfile
from routemail.errors import SpoolError
from routemail.identity import (
    HEADER_SCAN_LIMIT,
    Fingerprint,
    fingerprint,
    header_end,
    message_id_header,
    spool_id,
    variant_id,
)

if TYPE_CHECKING:
    from routemail.spool import Spool

MESSAGE_MODE = 0o640
SPILL_BYTES = 1 << 20  # a message up to this size stays in memory until it is committed
READ_CHUNK = 1 << 20
# A Message-ID and a fingerprint give one variant id; the next ones exist only in
# case a variant id is itself taken, which takes an MD5 collision.
MAX_VARIANTS = 4
# Out of room: a duplicate of a stored message can still be recognised and acknowledged.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# Linking an O_TMPFILE by name needs /proc (linkat with AT_EMPTY_PATH needs a capability).
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_ANONYMOUS = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")


@dataclass(frozen=True)
class Receipt:
    """What receiving a message did: its id, and whether it was already queued."""

    id: str
    duplicate: bool


class Incoming:
    """A message being received: hashed as it streams in, held in memory while
    small, and written to an unnamed file once it grows or is committed.

    A refused request (bad signature, too large) therefore costs no file at
    all, and a small duplicate of a stored message is recognised before its
    body is written anywhere. On Linux the file is an O_TMPFILE in QUEUE/ (no
    name until commit() links it, so a killed receiver leaves nothing
    behind); elsewhere a named file in tmp/. Nothing is visible in QUEUE/
    until commit() has made the bytes durable.
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
        # Streamed only once the message outgrows memory; a small one's is
        # computed from memory, and only if an entry holds its id already.
        self._fingerprint: Fingerprint | None = None
        self._fingerprint_hex: str | None = None
        self._kept = bytearray()  # the bytes committed from memory
        self._unstored: SpoolError | None = None  # the disk refused them; only hashed since

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
        if self.file is None and self._unstored is None and self.size <= SPILL_BYTES:
            self.buffer += chunk
            return
        if self._fingerprint is None:
            self._fingerprint = Fingerprint()
            self._fingerprint.update(self.buffer)
        self._fingerprint.update(chunk)
        if self._unstored is None:
            try:
                self._spill()
                self._write_file(chunk)
            except SpoolError as exc:
                self._keep_hashing_if_stored(exc)

    def _keep_hashing_if_stored(self, exc: SpoolError) -> None:
        """Out of room with this id already queued: go on hashing without storing, so
        commit() can still acknowledge a duplicate; otherwise fail now."""
        cause = exc.__cause__
        out_of_room = isinstance(cause, OSError) and cause.errno in NO_ROOM
        if not (out_of_room and self.spool.message_path(self.id).exists()):
            raise exc
        self._unstored = exc
        self.buffer = bytearray()
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self._unlink_temp()

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

    def fingerprint(self) -> str:
        """The message's fingerprint (routemail.identity), computed once."""
        if self._fingerprint_hex is None:
            if self._fingerprint is not None:
                self._fingerprint_hex = self._fingerprint.hexdigest()
            else:
                self._fingerprint_hex = fingerprint(self._kept or self.buffer)
        return self._fingerprint_hex

    # -- the file ----------------------------------------------------------

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

    def _make_durable(self) -> None:
        """The whole message in its file, fsync'd (once)."""
        if self._unstored is not None:
            raise self._unstored
        if self.file is not None and self.file.closed:
            return
        if self.file is None:
            self.file = os.fdopen(self._create_file(), "wb")
        if self.buffer:
            self._write_file(self.buffer)
            self._kept, self.buffer = self.buffer, bytearray()
        self.file.flush()
        os.fsync(self.file.fileno())

    def _link(self, queue_fd: int, msg_id: str) -> bool:
        """Give the durable file the name msg_id; False if that name is taken.

        The directory is not fsync'd here: _record does it once for both the
        link and the sidecar, before the receipt is acknowledged.
        """
        assert self.file is not None
        # An unnamed file is linked through its descriptor, so it stays open until then.
        source = self.path or Path(f"/proc/self/fd/{self.file.fileno()}")
        try:
            # Giving dir fds makes os.link use linkat(AT_SYMLINK_FOLLOW), which an
            # unnamed file's /proc/self/fd link needs (plain link(2) would not follow it).
            os.link(source, msg_id, src_dir_fd=queue_fd, dst_dir_fd=queue_fd, follow_symlinks=True)
        except FileExistsError:
            return False
        self.file.close()
        return True

    # -- committing ----------------------------------------------------------

    def commit(self, recipients: Iterable[str], verdicts: dict[str, str]) -> Receipt:
        """Make the message durable in QUEUE/ and record this receipt."""
        return self._commit(
            [sidecar.event(sidecar.RECEIVED, *recipients), sidecar.verdicts_event(verdicts)]
        )

    def commit_outgoing(self, recipients: Iterable[str]) -> Receipt:
        """Queue a message of our own (transactional mail) for these recipients."""
        return self._commit([sidecar.event(sidecar.OUTGOING, *recipients)])

    def _commit(self, events: list[sidecar.Event]) -> Receipt:
        """The receipt joins the entry holding the same message, or becomes a new one:
        under the Message-ID's id, or under a variant when that id holds another message."""
        text = "".join(e.format() for e in events).encode("utf-8")
        msg_id = self.id
        try:
            with self.spool.queue_dir() as queue_fd:
                for _ in range(MAX_VARIANTS):
                    receipt = self._settle(queue_fd, msg_id, text)
                    if receipt is not None:
                        return receipt
                    msg_id = variant_id(msg_id, self.fingerprint())
        except OSError as exc:
            if exc.errno in (*NO_ROOM, errno.EROFS, errno.EACCES):
                raise SpoolError(f"cannot write to {self.spool.queue}: {exc.strerror}") from exc
            raise SpoolError(f"cannot queue message: {exc}") from exc
        raise SpoolError(f"cannot queue message: {MAX_VARIANTS} ids all hold other messages")

    def _settle(self, queue_fd: int, msg_id: str, lines: bytes) -> Receipt | None:
        """Join the entry msg_id if it is the same message, or make msg_id ours if it
        is free; None when it holds a different message."""
        while True:
            if _exists(queue_fd, msg_id):
                return self._record(queue_fd, msg_id, lines, linked=False)
            self._make_durable()
            if self._link(queue_fd, msg_id):
                return self._record(queue_fd, msg_id, lines, linked=True)
            # Another receipt took the name since we looked: compare with that one.

    def _record(self, queue_fd: int, msg_id: str, lines: bytes, *, linked: bool) -> Receipt | None:
        """Append the receipt's lines to msg_id's sidecar and set its bit, unless the
        message file there is a different message (None).

        "First" is decided under the sidecar's lock (the sidecar was empty), so
        of many concurrent receipts exactly one is not a duplicate, and a
        message file a crash left without its sidecar is adopted by the retry.
        A new sidecar starts with the I line of the file it describes. The
        directory fsync happens inside the lock: whoever later sees a non-empty
        sidecar knows its directory entry (and the message's) is durable.
        """
        path = self.spool.sidecar_path(msg_id)
        digest = self.sha256.hexdigest() if linked else None
        if digest is None and not path.exists():
            # A file without a sidecar: never give someone else's message one.
            digest = self._stored_digest_if_same(msg_id)
            if digest is None:
                return None
        with sidecarfile.locked(path, create=True) as car:
            recorded = _recorded_digest(car.first_line())
            if digest is None:
                if recorded == self.sha256.hexdigest():
                    digest = recorded
                else:
                    digest = self._stored_digest_if_same(msg_id)
                    if digest is None:
                        return None
            first, before = car.empty, car.length
            if first:
                lines = sidecar.Event(sidecar.STORED, None, (digest,)).format().encode() + lines
            try:
                car.append(lines, mode=sidecarfile.PENDING_MODE)
                if first or linked:
                    os.fsync(queue_fd)
            except OSError:
                car.cut(before)
                if first:
                    # Leave a message file without a sidecar (adopted by the retry),
                    # not an entry without a receipt.
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise
        return Receipt(msg_id, duplicate=not first)

    def _stored_digest_if_same(self, msg_id: str) -> str | None:
        """The SHA-256 of the message file msg_id if it holds this same message."""
        raw = hashlib.sha256()
        fp = Fingerprint()
        with self.spool.message_path(msg_id).open("rb") as stored:
            while chunk := stored.read(READ_CHUNK):
                raw.update(chunk)
                fp.update(chunk)
        same = raw.digest() == self.sha256.digest() or fp.hexdigest() == self.fingerprint()
        return raw.hexdigest() if same else None

    def discard(self) -> None:
        self.buffer = bytearray()
        self._kept = bytearray()
        if self.file is not None and not self.file.closed:
            # Closing flushes what is buffered, which a full disk refuses again.
            with contextlib.suppress(OSError):
                self.file.close()
        self._unlink_temp()

    def _unlink_temp(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None


def _exists(queue_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=queue_fd)
    except FileNotFoundError:
        return False
    return True


def _recorded_digest(first_line: bytes) -> str | None:
    code, _, digest = first_line.decode("ascii", errors="replace").partition(" ")
    return (digest.strip() or None) if code == sidecar.STORED else None
