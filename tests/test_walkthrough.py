"""docs/operations.md followed on a fresh clone: pip install (not editable), routemail
init, check, the receiver under gunicorn with the env file, a test post with mailxfer,
a run, routemail status, the copy in the outbox; then the AWS steps as far as moto goes: the Lambda
handler moves a message from S3 to the receiver, and the ses transport sends it.

The clone is of the committed HEAD: what is not committed is not tested here, as it
would not be in a release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from mailrecv.local import LocalReceiver, start
from tests.conftest import ROOT

LIST = "test@lists.example.org"
ME = "you@example.org"
TEST_LIST = f"""
[lists.test]
description = "Checking the deployment"
members = ["{ME}"]
posters = "anyone"
"""
HELLO = (
    f"From: You <{ME}>\r\n"
    f"To: {LIST}\r\n"
    "Subject: Hello from routemail\r\n"
    "Message-ID: <hello-1@example.org>\r\n"
    "\r\n"
    "First post.\r\n"
).encode()


@dataclass
class Install:
    """A clone of the repository and a venv with it installed, as the guide's step 1."""

    src: Path
    venv: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@dataclass
class Site:
    install: Install
    etc: Path
    var: Path
    env: dict[str, str]  # the env file's variables, as systemd's EnvironmentFile= reads them

    def run(self, *argv: str, stdin: bytes = b"", **extra: str) -> subprocess.CompletedProcess[str]:
        """A command from the venv, with the env file's variables, from a neutral directory
        (so nothing is imported from the clone instead of the installed package)."""
        return subprocess.run(
            [self.install.bin(argv[0]), *argv[1:]],
            input=stdin.decode(),
            env={**os.environ, **self.env, **extra},
            cwd=self.var.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; comments and blank lines skipped (what EnvironmentFile= takes)."""
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value.strip('"')
    return env


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """git clone, python3 -m venv, pip install (step 1 of the guide)."""
    root = tmp_path_factory.mktemp("walkthrough")
    src, venv = root / "src", root / "venv"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(src)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    return Install(src, venv)


@pytest.fixture(scope="module")
def site(install: Install) -> Site:
    """routemail init into etc/ and var/, a test list added to lists.toml (step 2)."""
    etc, var = install.src.parent / "etc" / "routemail", install.src.parent / "var" / "routemail"
    made = subprocess.run(
        [install.bin("routemail"), "init", str(etc), "--data", str(var),
         "--domain", "lists.example.org", "--admin", "admin@example.org"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with (etc / "lists.toml").open("a") as f:
        f.write(TEST_LIST)
    # The guide's SES step: AWS credentials in the env file (moto's fake ones here).
    env_file = etc / "env"
    env_file.write_text(
        env_file.read_text()
        .replace("#AWS_ACCESS_KEY_ID=", "AWS_ACCESS_KEY_ID=testing")
        .replace("#AWS_SECRET_ACCESS_KEY=", "AWS_SECRET_ACCESS_KEY=testing")
        .replace("#AWS_DEFAULT_REGION=", "AWS_DEFAULT_REGION=us-east-1")
    )
    return Site(install, etc, var, read_env_file(env_file))


@pytest.fixture(scope="module")
def receiver(site: Site) -> Iterator[LocalReceiver]:
    """gunicorn from the venv with deploy/gunicorn.conf.py, run from the clone as the
    systemd unit runs it, with the env file's variables (step 3)."""
    log = (site.var.parent / "gunicorn.log").open("ab")
    env = {**os.environ, **site.env}
    started = start(env, python=site.install.bin("python"), root=site.install.src, stderr=log)
    try:
        yield started
    finally:
        started.stop()
        log.close()


def outbox(site: Site) -> list[Path]:
    new = site.var / "maillist" / "outbox" / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


def wait_until_done(site: Site, timeout: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = json.loads(site.run("routemail", "queue", "--json").stdout)
        if rows and all(r["state"] != "pending" for r in rows):
            return list(rows)
        assert time.monotonic() < deadline, rows
        time.sleep(0.3)


def test_local_steps_from_install_to_a_copy_in_the_outbox(
    site: Site, receiver: LocalReceiver
) -> None:
    """The guide's local steps: the installed routemail checks the new site, the receiver
    answers /healthz with the env file's secret, a signed test post is queued, the run
    the receiver starts delivers it, and the copy is in the outbox."""
    version = site.run("routemail", "--version")
    assert version.stdout.startswith("routemail, version "), version.stderr
    check = site.run("routemail", "check")
    assert check.returncode == 0, check.stderr
    assert (
        check.stdout == f"{site.etc}/lists.toml: ok: 1 list, 0 dynamic patterns, transport outbox\n"
    )
    with urllib_open(receiver.url + "/healthz") as answer:
        assert answer.status == 200
    message = site.var.parent / "hello.eml"
    message.write_bytes(HELLO)
    post = site.run(
        "mailxfer", "post", str(message), "--to", LIST, "--url", receiver.url + "/mailrecv"
    )
    assert post.returncode == 0, post.stderr
    (row,) = wait_until_done(site)
    assert post.stdout.split()[0] == row["id"]
    assert (row["state"], row["sent"], row["destinations"]) == ("done", 1, [LIST])
    (copy,) = outbox(site)
    head = copy.read_bytes().split(b"\r\n\r\n")[0]
    assert f"Delivered-To: {ME}".encode() in head
    assert b"Subject: Hello from routemail" in head
    shown = site.run("routemail", "show", str(row["id"]))
    assert f"sent to {ME}" in shown.stdout, shown.stdout
    again = site.run("routemail", "run")
    assert again.returncode == 0, again.stderr
    status = site.run("routemail", "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    answer = json.loads(status.stdout)
    assert answer["config"]["valid"] and answer["problems"] == []
    assert answer["queue"] == {"pending": 0, "held": 0, "done": 1, "discarded": 0}
    assert answer["last_run"] is not None


def urllib_open(url: str) -> object:
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def test_aws_steps_as_far_as_moto_goes(
    site: Site, receiver: LocalReceiver, moto_url: str, tmp_path: Path
) -> None:
    """SES stores a message in the bucket; the Lambda handler of the clone (the zip's
    mailxfer/) posts it to the receiver with the env file's secret and deletes the object;
    with [delivery] transport = "ses" the run sends the copy through SES."""
    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket="routemail-inbound")
    message = HELLO.replace(b"hello-1@", b"hello-2@").replace(b"First", b"Second")
    s3.put_object(Bucket="routemail-inbound", Key="inbound/ses-2", Body=message)
    ses = boto3.client("sesv2", endpoint_url=moto_url)
    ses.create_email_identity(EmailIdentity="lists.example.org")
    config = site.etc / "lists.toml"
    text = config.read_text()
    config.write_text(
        text.replace('transport = "outbox"', 'transport = "ses"')
        + f'\n[delivery.ses]\nregion = "us-east-1"\nendpoint_url = "{moto_url}"\n'
    )
    try:
        assert site.run("routemail", "check").returncode == 0
        event = {
            "Records": [
                {
                    "eventSource": "aws:ses",
                    "ses": {
                        "mail": {"messageId": "ses-2", "destination": [LIST]},
                        "receipt": {
                            "recipients": [LIST],
                            **{
                                f"{v}Verdict": {"status": "PASS"}
                                for v in ("spam", "virus", "spf", "dkim", "dmarc")
                            },
                        },
                    },
                }
            ]
        }
        lambda_env = {
            "MAILRECV_URL": receiver.url + "/mailrecv",
            "MAILRECV_SECRET": site.env["MAILRECV_SECRET"],
            "MAILXFER_BUCKET": "routemail-inbound",
            "MAILXFER_PREFIX": "inbound/",
            "AWS_ENDPOINT_URL": moto_url,
        }
        handled = site.run(
            "python", "-c",
            "import json, sys; from mailxfer import handler; "
            "print(json.dumps(handler(json.load(sys.stdin), None)))",
            stdin=json.dumps(event).encode(), **lambda_env,
        )  # fmt: skip
        assert handled.returncode == 0, handled.stderr
        assert len(json.loads(handled.stdout)["delivered"]) == 1
        assert s3.list_objects_v2(Bucket="routemail-inbound").get("KeyCount") == 0
        rows = wait_until_done(site)
        assert [r["state"] for r in rows] == ["done", "done"]
        with urllib_open(moto_url + "/moto-api/data.json") as answer:
            sent = json.load(answer)["ses"]["RawMessage"]
        assert len(sent) == 1, sent
        assert sent[0]["raw_data"].startswith(f"From: You via test <{LIST}>\r\n")
        assert sent[0]["raw_data"].endswith("\r\n\r\nSecond post.\r\n")
    finally:
        config.write_text(text)
