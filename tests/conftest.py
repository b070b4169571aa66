"""Shared fixtures: a project directory with lists.toml, and the real receiver under gunicorn."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailrecv.local import LocalReceiver, ReceiverNotUp, free_port, start
from routemail.spool import Spool

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SECRET = "test-shared-secret-0123456789abcdef"

BASE_CONFIG = """\
[site]
domain = "lists.example.org"
admin = "admin@example.org"
base_url = "https://lists.example.org"

[receiver]
on_receipt = "none"

[lists.volunteers]
description = "All volunteers"
moderators = ["coordinator@example.org"]
members = ["ann@example.com", "bob@example.net", "coordinator@example.org"]
subject_prefix = "[volunteers]"
footer = "You are on {list} as {recipient}. Leave: {unsubscribe_url}"

[lists.board]
moderators = ["chair@example.org"]
posters = "moderators"
members = ["chair@example.org", "ann@example.com"]
"""


def example_site(root: Path, config_text: str | None = None) -> Path:
    """examples/lists.toml (or config_text) in root, with the example database built
    from examples/serv.sql and the lookup program beside it, as the file expects."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "lists.toml"
    config.write_text(config_text or (EXAMPLES / "lists.toml").read_text())
    with contextlib.closing(sqlite3.connect(root / "serv.sqlite3")) as db:
        db.executescript((EXAMPLES / "serv.sql").read_text())
    shutil.copy(EXAMPLES / "lookup-command", root / "lookup-command")
    return config


@dataclass
class Project:
    """A lists.toml and a data directory in a temporary folder."""

    root: Path

    def __post_init__(self) -> None:
        # A site's data directory exists (routemail init makes it); commands create
        # nothing where there is none.
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def config_path(self) -> Path:
        return self.root / "lists.toml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def spool(self) -> Spool:
        return Spool(self.data_dir / "maillist").ensure()

    def write_config(self, text: str) -> Path:
        self.config_path.write_text(text)
        return self.config_path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ROUTEMAIL_CONFIG=str(self.config_path),
            ROUTEMAIL_DATA=str(self.data_dir),
            MAILRECV_SECRET=SECRET,
        )
        return env


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A temporary project with the base lists.toml."""
    p = Project(tmp_path)
    p.write_config(BASE_CONFIG)
    return p


@dataclass
class Receiver(LocalReceiver):
    """gunicorn serving mailrecv.wsgi:app on a loopback port, for a project."""

    project: Project
    log_path: Path

    @property
    def mailrecv_url(self) -> str:
        return self.url + "/mailrecv"


def start_receiver(
    project: Project,
    workers: int = 1,
    extra_env: dict[str, str | None] | None = None,
    app: str = "mailrecv.wsgi:app",
) -> Receiver:
    """gunicorn started and answering /healthz; an extra_env value of None removes it.
    One worker (with its threads) unless the test is about several: each worker
    imports the whole application, and the suite starts a few hundred receivers."""
    log_path = project.root / "gunicorn.log"
    env = project.env()
    for name, value in (extra_env or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    # A file, not a pipe: nobody reads it during the test, and a full pipe would block gunicorn.
    with log_path.open("ab") as log:
        try:
            started = start(env, workers=workers, app=app, stderr=log)
        except ReceiverNotUp as exc:
            raise RuntimeError(f"{exc}: {log_path.read_text(errors='replace')}") from None
    return Receiver(started.process, started.port, project, log_path)


@contextlib.contextmanager
def running_receiver(project: Project, **options: Any) -> Iterator[Receiver]:
    """start_receiver(project, **options), stopped when the block ends."""
    r = start_receiver(project, **options)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def workers() -> int:
    """gunicorn workers for the test's receiver; a test about several workers
    overrides it with @pytest.mark.parametrize("workers", [2])."""
    return 1


@pytest.fixture
def receiver(project: Project, workers: int) -> Iterator[Receiver]:
    """The real receiver under gunicorn on a free loopback port."""
    with running_receiver(project, workers=workers) as r:
        yield r


@contextlib.contextmanager
def tmpfs_data_dir(project: Project, size: str) -> Iterator[Path]:
    """A tmpfs of this size (mount's size=, e.g. "2m") mounted as the project's data
    directory for the block; the test is skipped where mounting is not possible."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    project.data_dir.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(project.data_dir)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield project.data_dir
    finally:
        subprocess.run(["umount", "-l", str(project.data_dir)], check=True)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto as a real HTTP server on a loopback port, for the whole run; its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_url(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto reset to an empty account, with fake credentials in the environment."""
    request = urllib.request.Request(moto_server + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SESV2"):
        monkeypatch.delenv(name, raising=False)
    return moto_server


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def routemail_cli(project: Project) -> RunCli:
    """Runs the installed `routemail` command against the project."""

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "routemail", *args],
            env=project.env(),
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
        )

    return run
