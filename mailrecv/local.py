"""The receiver under gunicorn on a free loopback port, as deployed: for
`make demo`, the tests and bench/receive.py, which must exercise the real
server rather than Flask's test client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
Output = IO[bytes] | int


class ReceiverNotUp(RuntimeError):
    """gunicorn exited, or did not answer /healthz in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalReceiver:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal gunicorn's whole process group; SIGKILL if it outlives the timeout."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start(
    env: Mapping[str, str],
    *,
    workers: int = 2,
    options: Sequence[str] = (),
    app: str = "mailrecv.wsgi:app",
    stdout: Output = subprocess.DEVNULL,
    stderr: Output = subprocess.DEVNULL,
    timeout: float = 30,
    python: str = sys.executable,
    root: Path = ROOT,
) -> LocalReceiver:
    """gunicorn with deploy/gunicorn.conf.py (and further gunicorn options),
    returned once /healthz answers at all: an unhealthy answer is the caller's
    to look at. python and root choose another installation (a fresh clone's)."""
    port = free_port()
    process = subprocess.Popen(
        [
            python,
            "-m",
            "gunicorn",
            "-c",
            str(root / "deploy" / "gunicorn.conf.py"),
            "--workers",
            str(workers),
            *options,
            "--bind",
            f"127.0.0.1:{port}",
            "--chdir",
            str(root),
            app,
        ],
        env=dict(env),
        start_new_session=True,
        stdout=stdout,
        stderr=stderr,
    )
    receiver = LocalReceiver(process, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ReceiverNotUp(f"gunicorn exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(receiver.url + "/healthz", timeout=1):
                return receiver
        except urllib.error.HTTPError as answer:
            answer.close()
            return receiver
        except OSError:
            time.sleep(0.1)
    receiver.stop(signal.SIGKILL)
    raise ReceiverNotUp(f"gunicorn did not answer /healthz within {timeout:g} s")
