"""An acknowledged receipt is complete on disk: the real receiver under gunicorn on a
really full filesystem (a 16 MiB tmpfs as the data directory, filled by another
writer), then `routemail run` once there is room again.

Mounting needs root. Without it, the same receipts meet a file size limit instead
(RLIMIT_FSIZE on gunicorn): the kernel's short write and then EFBIG, where a full
disk gives ENOSPC.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mailxfer.post import post_message
from routemail import sidecar
from routemail.spool import Spool
from tests.conftest import SECRET, Project, Receiver, RunCli, running_receiver, tmpfs_data_dir

PASSING = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
VOLUNTEERS = "volunteers@lists.example.org"
FILE_SIZE_LIMIT = 256 * 1024


def message(tag: str, body: bytes = b"Who can cover Saturday?\n") -> bytes:
    return (
        f"From: Ann Author <ann@example.com>\nTo: {VOLUNTEERS}\nSubject: Shift {tag}\n"
        f"Message-ID: <{tag}@example.com>\n\n"
    ).encode() + body


SMALL = message("small")
BIG = message("big", b"0123456789abcdef" * 90_000)  # 1.4 MiB: streamed to a file as it arrives


def post(receiver: Receiver, raw: bytes, *to: str) -> tuple[int, dict[str, object]]:
    result = post_message(
        receiver.mailrecv_url, SECRET.encode(), io.BytesIO(raw), list(to or [VOLUNTEERS]), PASSING
    )
    return result.status, json.loads(result.body)


@dataclass
class FullDisk:
    """A data directory that refuses new bytes while full() is on: a filled tmpfs, or
    (without root) a receiver whose files may not grow past FILE_SIZE_LIMIT."""

    project: Project
    tmpfs: bool

    @contextlib.contextmanager
    def full(self) -> Iterator[Receiver]:
        """The receiver, serving while the disk is full."""
        if self.tmpfs:
            with running_receiver(self.project) as receiver:
                self._fill()
                yield receiver
            (self.project.data_dir / "filler").unlink()
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, hard))
        try:
            receiver = running_receiver(self.project)
            started = receiver.__enter__()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        try:
            yield started
        finally:
            receiver.__exit__(None, None, None)

    def _fill(self) -> None:
        """Another writer takes every free byte, down to the last page."""
        with (self.project.data_dir / "filler").open("wb", buffering=0) as filler:
            for size in (1 << 16, 1):
                with contextlib.suppress(OSError):
                    while filler.write(b"\0" * size):
                        pass
        assert os.statvfs(self.project.data_dir).f_bavail == 0

    def crowd(self, spool: Spool, msg_id: str) -> None:
        """Bring a sidecar near the end of its room: the last page of a full tmpfs is
        its own; under the size limit, padding (lines of no known code) takes it."""
        if not self.tmpfs:
            path = spool.sidecar_path(msg_id)
            pad = b"Z " + b"." * 98 + b"\n"
            with path.open("ab") as car:
                car.write(pad * ((FILE_SIZE_LIMIT - 2000 - path.stat().st_size) // len(pad)))


@pytest.fixture(params=["tmpfs", "rlimit"])
def disk(request: pytest.FixtureRequest, project: Project) -> Iterator[FullDisk]:
    """The project's data directory on a 16 MiB tmpfs (root), or under a file size limit."""
    if request.param == "rlimit":
        yield FullDisk(project, tmpfs=False)
        return
    with tmpfs_data_dir(project, "16m"):
        yield FullDisk(project, tmpfs=True)


def receipt_lines(spool: Spool, msg_id: str) -> list[list[str]]:
    """The sidecar's lines, split; it must end in a newline (nothing torn)."""
    text = spool.sidecar_path(msg_id).read_text()
    assert text.endswith("\n"), "a torn line was left in the sidecar"
    return [line.split() for line in text.splitlines()]


def acknowledged(spool: Spool, msg_id: str) -> list[str]:
    return [d for line in receipt_lines(spool, msg_id) if line[0] == "R" for d in line[2:]]


def test_on_a_full_disk_only_complete_receipts_are_acknowledged(
    disk: FullDisk, routemail_cli: RunCli
) -> None:
    """With the disk full, duplicates of stored messages are acknowledged while their R
    line fits and answered 503 (leaving nothing) once it does not; a new message, or a
    different one reusing a stored Message-ID, gets 503. Once there is room, the
    sender's retries succeed and `routemail run` routes every acknowledged destination."""
    project = disk.project
    spool = project.spool
    if disk.tmpfs:
        with running_receiver(project) as receiver:
            assert post(receiver, BIG)[0] == 200
            assert post(receiver, SMALL)[0] == 200
    else:  # the limit would refuse BIG itself: store both beforehand
        spool.receive(BIG, [VOLUNTEERS], PASSING)
        spool.receive(SMALL, [VOLUNTEERS], PASSING)
    small_id = spool.ids()[-1]
    disk.crowd(spool, small_id)
    # Too big to fit anywhere now (the size limit is per file), so they must be refused.
    new = message("new", b"x" * (FILE_SIZE_LIMIT + 10))
    other = message("small", b"Same Message-ID, other body " * 10_000)
    accepted: list[str] = []
    refused: list[str] = []
    with disk.full() as receiver:
        assert post(receiver, new) == (503, {"error": "spool not writable; retry later"})
        assert post(receiver, other)[0] == 503
        status, answer = post(receiver, BIG, "big-again@lists.example.org")
        assert (status, answer["duplicate"]) == (200, True)
        for n in range(100):
            address = f"extra{n}@lists.example.org"
            status, answer = post(receiver, SMALL, address)
            assert status in (200, 503)
            if status == 200:
                assert answer["duplicate"] is True
                accepted.append(address)
            else:
                refused.append(address)
            assert acknowledged(spool, small_id) == [VOLUNTEERS, *accepted]
            if len(refused) == 3:
                break
        assert accepted, "no duplicate was acknowledged"
        assert refused, "the sidecar never filled up"
    with running_receiver(project) as receiver:
        for address in refused:
            assert post(receiver, SMALL, address)[0] == 200
        assert post(receiver, other)[1]["duplicate"] is False
        assert post(receiver, new)[1]["duplicate"] is False
    done = routemail_cli("run")
    assert done.returncode == 0, done.stderr
    for msg_id in spool.ids():
        history = spool.history(msg_id)
        for destination in history.destinations:
            name = destination.split("@")[0]
            routed = history.has(sidecar.LIST_SENT, name) or history.has(
                sidecar.UNKNOWN, destination
            )
            assert routed, f"{msg_id}: {destination} was acknowledged but never routed"
    assert len(spool.ids()) == 4
