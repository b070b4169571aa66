"""A site of its own: `routemail init` makes one; commands refuse a place that is no
site and create nothing there; inject starts a run as the receiver does; `| head`
ends quietly."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from routemail import config as configmod
from routemail.site import Answers, render_config
from tests.conftest import BASE_CONFIG, ROOT, Project

MESSAGE = (
    b"From: Ann Author <ann@example.com>\r\n"
    b"To: volunteers@lists.example.org\r\n"
    b"Subject: Site test\r\n"
    b"Message-ID: <site-test@example.com>\r\n"
    b"\r\n"
    b"Hello list.\r\n"
)


def routemail(
    config: Path, data: Path, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """The installed command line in a process of its own, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "routemail", "--config", str(config), "--data", str(data), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("queue",),
        ("queue", "--json"),
        ("run",),
        ("show", "abc"),
        ("inject", "-", "--to", "volunteers@lists.example.org"),
        ("suppression", "list"),
        ("bounces",),
        ("webhooks",),
    ],
)
def test_a_mistyped_data_directory_is_refused_and_not_created(
    project: Project, args: tuple[str, ...]
) -> None:
    """Pointed at a data directory that does not exist, a command says there is no site,
    names ROUTEMAIL_DATA / --data and `routemail init`, exits 1 and creates nothing."""
    typo = project.root / "dta"
    result = routemail(project.config_path, typo, *args, stdin=MESSAGE)
    assert result.returncode == 1, result
    assert result.stdout == b""
    assert result.stderr.decode() == (
        f"Error: no routemail site: the data directory {typo} does not exist; point "
        "ROUTEMAIL_DATA (or --data) at the site's data directory, or create a site with "
        "`routemail init DIR`\n"
    )
    assert not typo.exists()


def test_a_missing_config_file_is_refused_before_the_data_directory_is_touched(
    tmp_path: Path,
) -> None:
    """With no lists.toml, `queue` says so (naming ROUTEMAIL_CONFIG) and leaves an existing
    but empty data directory as it was: no spool, no state database."""
    data = tmp_path / "data"
    data.mkdir()
    result = routemail(tmp_path / "lists.toml", data, "queue")
    assert result.returncode == 1
    assert b"point ROUTEMAIL_CONFIG (or --config) at the site's lists.toml" in result.stderr
    assert list(data.iterdir()) == []


def wait_for_state(project: Project, state: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        out = routemail(project.config_path, project.data_dir, "queue", "--json")
        rows = json.loads(out.stdout)
        if rows and all(r["state"] == state for r in rows):
            return dict(rows[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"queue never reached {state}: {rows}")
        time.sleep(0.2)


def test_inject_starts_a_run_in_the_background(project: Project) -> None:
    """Mail piped into `routemail inject` is routed without waiting for the timer: inject
    prints the id, a run it started delivers the copies, and the run's output goes to
    data/run.log."""
    project.write_config(BASE_CONFIG.replace('on_receipt = "none"', 'on_receipt = "run"'))
    result = routemail(
        project.config_path, project.data_dir, "inject", "-", "--to",
        "volunteers@lists.example.org", stdin=MESSAGE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    entry = wait_for_state(project, "done")
    assert result.stdout.decode() == f"{entry['id']}\n"
    assert entry["sent"] == 3
    assert len(list((project.data_dir / "maillist" / "outbox" / "new").iterdir())) == 3
    assert (project.data_dir / "run.log").exists()


def test_inject_no_run_leaves_the_message_for_the_timer(project: Project) -> None:
    """`inject --no-run` queues the message and starts nothing: it stays pending."""
    project.write_config(BASE_CONFIG.replace('on_receipt = "none"', 'on_receipt = "run"'))
    result = routemail(
        project.config_path, project.data_dir, "inject", "-", "--no-run", "--to",
        "volunteers@lists.example.org", stdin=MESSAGE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    time.sleep(1.0)  # long enough for a wrongly started run to have taken the lock
    assert wait_for_state(project, "pending")["sent"] == 0
    assert not (project.data_dir / "run.log").exists()


def test_output_into_a_closed_pipe_ends_quietly(project: Project) -> None:
    """`routemail queue | head` where head has already gone: no "Broken pipe" error, no
    traceback, the exit status a shell shows for SIGPIPE."""
    routemail(
        project.config_path, project.data_dir, "inject", "-", "--no-run", "--to",
        "volunteers@lists.example.org", stdin=MESSAGE,
    )  # fmt: skip
    argv = [sys.executable, "-m", "routemail", "--config", str(project.config_path)]
    with subprocess.Popen(
        [*argv, "--data", str(project.data_dir), "queue"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader is gone before routemail writes its first line
        stderr = process.stderr.read()
        assert process.wait(timeout=60) == 141
    assert stderr == b""


# -- routemail init ------------------------------------------------------------------


def init(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "routemail", "init", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_init_creates_a_site_elsewhere(tmp_path: Path) -> None:
    """`routemail init DIR --data DATA` writes lists.toml with [site] from the flags, an
    environment file (0600) with the paths and a new receiver secret, and the data
    directory (0750); the new site checks ok and its queue is empty."""
    etc, var = tmp_path / "etc" / "routemail", tmp_path / "var" / "lib" / "routemail"
    result = init(
        str(etc), "--data", str(var), "--domain", "Lists.Example.COM",
        "--admin", "owner@example.com", "--base-url", "https://mail.example.com/routemail",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        f"created {etc}/lists.toml: the site's lists; edit it, then `routemail check`",
        f"created {etc}/env (mode 600): ROUTEMAIL_CONFIG, ROUTEMAIL_DATA and the receiver's "
        "secret, MAILRECV_SECRET",
        f"created {var} (mode 750): the spool and state",
        f"next: set -a; . {etc}/env; set +a; routemail check",
    ]
    config = configmod.load(etc / "lists.toml")
    assert (config.site.domain, config.site.admin, config.site.base_url) == (
        "lists.example.com",
        "owner@example.com",
        "https://mail.example.com/routemail",
    )
    env = env_file(etc / "env")
    assert env["ROUTEMAIL_CONFIG"] == str(etc / "lists.toml")
    assert env["ROUTEMAIL_DATA"] == str(var)
    assert re.fullmatch(r"[0-9a-f]{64}", env["MAILRECV_SECRET"])
    assert stat.S_IMODE((etc / "env").stat().st_mode) == 0o600
    assert stat.S_IMODE(var.stat().st_mode) == 0o750
    assert "MAILRECV_SECRET" not in (etc / "lists.toml").read_text()
    assert routemail(etc / "lists.toml", var, "check").returncode == 0
    queue = routemail(etc / "lists.toml", var, "queue")
    assert (queue.returncode, queue.stdout) == (0, b"queue is empty\n")


def test_init_never_overwrites_a_site(tmp_path: Path) -> None:
    """A second init over the same directories is refused, naming what exists, and leaves
    the first site's secret and lists as they were."""
    args = ("--domain", "lists.example.org", "--admin", "admin@example.org")
    assert init(str(tmp_path), *args).returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "lists.toml", tmp_path / "env")}
    again = init(str(tmp_path), *args)
    assert again.returncode == 1
    assert again.stderr.decode() == (
        f"Error: {tmp_path}/lists.toml, {tmp_path}/env, {tmp_path}/data already exist: "
        "routemail init never overwrites a site; choose other directories, or move these "
        "away first\n"
    )
    assert {p: p.read_bytes() for p in before} == before
    # A data directory that has something in it is a site's too.
    (tmp_path / "other").mkdir()
    refused = init(str(tmp_path / "other"), "--data", str(tmp_path / "data"), *args)
    assert refused.returncode == 1
    assert list((tmp_path / "other").iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--domain", "lists.example.org", "--admin", "nobody"),
            "Error: Invalid value for --admin: 'nobody' is not an email address",
        ),
        (
            ("--domain", "not a domain", "--admin", "admin@example.org"),
            "Error: --domain: 'not a domain' is not a domain name\n",
        ),
        (
            ("--domain", "lists.example.org", "--admin", "a@example.org", "--base-url", "x"),
            "Error: --base-url: expected an http(s) URL\n",
        ),
        (("--admin", "admin@example.org"), "Error: --domain is required (there is no terminal"),
    ],
)
def test_init_refuses_bad_answers_and_writes_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """An answer lists.toml would not accept, or one missing with no terminal to ask on,
    is named and nothing is created."""
    site = tmp_path / "site"
    result = init(str(site), *args)
    assert result.returncode != 0
    assert message in result.stderr.decode(), result.stderr
    assert not site.exists()


def test_init_asks_on_a_terminal(tmp_path: Path) -> None:
    """Without flags on a terminal, init asks for each answer (the URL defaults from the
    domain) and makes the site from what was typed."""
    site = tmp_path / "site"
    primary, secondary = os.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "routemail", "init", str(site)],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    ) as process:
        os.close(secondary)
        seen = b""
        for question, answer in (
            (b"Domain of the list addresses: ", b"lists.example.net\n"),
            (b"Admin address (unknown mail goes there): ", b"boss@example.net\n"),
            (b"Public URL of the receiver [https://lists.example.net]: ", b"\n"),
        ):
            while question not in seen:
                seen += os.read(primary, 1024)
            os.write(primary, answer)
        assert process.wait(timeout=60) == 0
    os.close(primary)
    config = configmod.load(site / "lists.toml")
    assert (config.site.domain, config.site.admin, config.site.base_url) == (
        "lists.example.net",
        "boss@example.net",
        "https://lists.example.net",
    )


def test_top_level_lists_toml_is_what_init_writes() -> None:
    """The repository's lists.toml is the starting point init writes, with example answers."""
    answers = Answers("lists.example.org", "admin@example.org", "https://lists.example.org")
    assert (ROOT / "lists.toml").read_text() == render_config(answers)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")
def test_init_gives_the_site_to_the_service_user(tmp_path: Path) -> None:
    """With --user, the service user owns lists.toml and the data, and reads the
    environment file through its group (0640) without owning it."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    site = tmp_path / "etc"
    result = init(str(site), "--domain", "lists.example.org", "--admin", "a@example.org",
                  "--user", "nobody")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"env (mode 640)" in result.stdout
    for path in (site, site / "lists.toml", site / "data", site / "data" / "maillist"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid), path
    env = (site / "env").stat()
    assert (env.st_uid, env.st_gid, stat.S_IMODE(env.st_mode)) == (0, nobody.pw_gid, 0o640)
    refused = init(str(tmp_path / "x"), "--domain", "lists.example.org", "--admin",
                   "a@example.org", "--user", "no-such-user-here")  # fmt: skip
    assert refused.returncode == 1
    assert b"no user 'no-such-user-here'; create it first" in refused.stderr
    assert not (tmp_path / "x").exists()


def test_init_refuses_a_path_the_environment_file_cannot_hold(tmp_path: Path) -> None:
    """A directory name with a quote, $ or backquote would be read differently by systemd
    and sh: init refuses it before writing anything."""
    site = tmp_path / "bad$HOME"
    result = init(str(site), "--domain", "lists.example.org", "--admin", "a@example.org")
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"Error: {site}/env: choose a path without quotes, $, ` or backslashes\n"
    )
    assert not site.exists()


def test_init_quotes_a_path_with_spaces(tmp_path: Path) -> None:
    """A path with a space is written quoted, as both systemd and sh read it."""
    site = tmp_path / "my site"
    assert (
        init(str(site), "--domain", "lists.example.org", "--admin", "a@example.org").returncode == 0
    )
    assert f'ROUTEMAIL_CONFIG="{site}/lists.toml"' in (site / "env").read_text()
    sourced = subprocess.run(
        ["sh", "-c", f'set -a; . "{site}/env"; printf %s "$ROUTEMAIL_DATA"'],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert sourced.stdout == f"{site}/data"
