"""The on-disk queue: its entries, their sidecars and the "needs processing" bit.

Layout and guarantees are documented in docs/spool-format.md. A message
arrives through routemail/incoming.py (which entry it joins is the rule of
routemail/identity.py); every sidecar write goes through
routemail/sidecarfile.py, under the sidecar's flock, all or nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from routemail import sidecar, sidecarfile
from routemail.atomic import fsync_dir
from routemail.errors import SpoolError, UnknownMessage
from routemail.incoming import Incoming, Receipt

SIDECAR_SUFFIX = ".data"
PENDING_MODE = sidecarfile.PENDING_MODE  # user-read bit set: needs processing
DONE_MODE = sidecarfile.DONE_MODE  # user-read bit clear: nothing left to do
STALE_TEMP_SECONDS = 24 * 3600
# An id is 22 characters of base64url (docs/spool-format.md, "The id"): never a path.
QUEUE_ID = re.compile(r"[A-Za-z0-9_-]{22}", re.ASCII)


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

    def unusable(self) -> list[str]:
        """Why a post could not be stored now, found without creating anything (a
        health check that made the directories would race an operator removing them).
        A missing directory is fine when it can be made: the receiver makes it."""
        found = []
        for d in (self.root, self.queue, self.tmp):
            if d.is_dir():
                if not os.access(d, os.W_OK):
                    found.append(f"{d} is not writable")
            elif d.exists() or d.is_symlink():
                found.append(f"{d} is not a directory: move it out of the way")
            else:
                parent = _existing_ancestor(d)
                if not (parent.is_dir() and os.access(parent, os.W_OK)):
                    found.append(f"cannot create {d}: {parent} is not a writable directory")
                break  # the directories below a missing one are made with it
        return found

    def free_bytes(self) -> int:
        """Bytes the service user may still write on the queue's filesystem (not
        counting the part reserved for root, which it cannot use)."""
        st = os.statvfs(_existing_ancestor(self.queue))
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
    def queue_dir(self) -> Iterator[int]:
        """QUEUE/ open as a directory, to link into and fsync; created if missing."""
        try:
            fd = os.open(self.queue, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            self.ensure()
            fd = os.open(self.queue, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield fd
        finally:
            os.close(fd)

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
        """Append whole lines under the sidecar's lock, all or none (a full disk
        raises and leaves the sidecar as it was); optionally set or clear the
        needs-processing bit in the same critical section."""
        text = "".join(e.format() for e in events).encode("utf-8")
        with sidecarfile.locked(self.sidecar_path(msg_id), create=True) as car:
            created = car.empty
            mode = None if pending is None else PENDING_MODE if pending else DONE_MODE
            car.append(text, sync=sync, mode=mode)
            # Inside the lock, so no later appender goes on before the entry is durable.
            if created:
                fsync_dir(self.queue)

    def append_checked(
        self,
        msg_id: str,
        choose: Callable[[str, bool], Sequence[sidecar.Event]],
        *,
        mark: bool | None = None,
    ) -> Sequence[sidecar.Event]:
        """Under the sidecar's lock, read it and append the lines choose picks from its
        text and whether it needs processing (all or none), optionally setting (mark)
        the needs-processing bit with them; the lines appended. Never makes an entry:
        one that does not exist raises UnknownMessage."""
        with sidecarfile.locked(self.sidecar_path(msg_id), create=False) as car:
            pending = bool(car.mode & stat.S_IRUSR)
            events = choose(car.read().decode("utf-8", errors="replace"), pending)
            if events:
                mode = None if mark is None else PENDING_MODE if mark else DONE_MODE
                car.append("".join(e.format() for e in events).encode("utf-8"), mode=mode)
        return events

    def append_after(
        self,
        msg_id: str,
        choose: Callable[[sidecar.History], Sequence[sidecar.Event]],
        *,
        pending: bool | None = None,
    ) -> list[sidecar.Event]:
        """append_checked with the history for choose to look at (it raises to append
        nothing), so no other writer comes between the look and the lines."""

        def from_text(text: str, _pending: bool) -> Sequence[sidecar.Event]:
            return choose(sidecar.History.of(sidecar.parse(text)))

        return list(self.append_checked(msg_id, from_text, mark=pending))

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
        # The owner cannot read a mode 0200 file: sidecarfile lends it the bit,
        # under the same lock every mode change takes, so the flag is never lost.
        with sidecarfile.locked(path, create=False) as car:
            return car.read().decode("utf-8", errors="replace")

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
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,22}", prefix, re.ASCII):
            raise UnknownMessage(
                f"{prefix[:40]!r} is not a queue id (up to 22 of A-Z a-z 0-9 _ -): "
                "see `routemail queue`"
            )
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
        """Remove an entry, under its sidecar's lock: a receipt arriving meanwhile
        waits, then finds no entry and makes a new one (never writes to the old)."""
        with (
            contextlib.suppress(UnknownMessage),
            sidecarfile.locked(self.sidecar_path(msg_id), create=False),
        ):
            with contextlib.suppress(FileNotFoundError):
                self.message_path(msg_id).unlink()
            self.sidecar_path(msg_id).unlink()

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


def _existing_ancestor(path: Path) -> Path:
    """path itself if it exists, else the nearest ancestor that does."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
