"""The inbound commands: `routemail inject`, `queue`, `show`, `check` and `mailxfer post`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from routemail.cli import cli
from tests.conftest import SECRET, Project, Receiver

MESSAGE = (
    b"From: Ann Author <ann@example.com>\r\n"
    b"To: volunteers@lists.example.org\r\n"
    b"Subject: Rota for May\r\n"
    b"Message-ID: <rota-may@example.com>\r\n"
    b"\r\n"
    b"The May rota is attached.\r\n"
)
MSG_ID = base64.urlsafe_b64encode(hashlib.md5(b"<rota-may@example.com>").digest())
MSG_ID_TEXT = MSG_ID.rstrip(b"=").decode()
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def routemail(project: Project, *args: str, input: bytes | None = None) -> Result:
    """Run the routemail CLI in-process against the project, as a user would."""
    runner = CliRunner()
    return runner.invoke(
        cli,
        ["--config", str(project.config_path), "--data", str(project.data_dir), *args],
        input=input,
        catch_exceptions=False,
    )


@pytest.fixture
def message_file(tmp_path: Path) -> Path:
    """The example message as a file."""
    path = tmp_path / "rota.eml"
    path.write_bytes(MESSAGE)
    return path


def test_inject_file(project: Project, message_file: Path) -> None:
    """`inject FILE --to` queues the exact bytes, prints the id, and marks the entry pending."""
    result = routemail(project, "inject", str(message_file), "--to", "volunteers@lists.example.org")
    assert result.exit_code == 0, result.output
    assert result.stdout == MSG_ID_TEXT + "\n"
    spool = project.spool
    assert spool.read_message(MSG_ID_TEXT) == MESSAGE
    lines = spool.sidecar_path(MSG_ID_TEXT).read_text().splitlines()
    assert lines[0] == f"I {hashlib.sha256(MESSAGE).hexdigest()}"
    assert re.fullmatch(f"R {TIME} volunteers@lists.example.org", lines[1])
    assert lines[2] == "V PASS PASS PASS PASS PASS"
    assert stat.S_IMODE(spool.sidecar_path(MSG_ID_TEXT).stat().st_mode) == 0o600


def test_inject_stdin_with_verdicts(project: Project) -> None:
    """`inject -` reads standard input; --verdicts overrides the named ones, others PASS."""
    result = routemail(
        project,
        "inject",
        "-",
        "--to",
        "volunteers@lists.example.org",
        "--to",
        "Board <board@LISTS.example.org>",
        "--verdicts",
        "spf=fail spam=GRAY",
        input=MESSAGE,
    )
    assert result.exit_code == 0, result.output
    lines = project.spool.read_sidecar(MSG_ID_TEXT).splitlines()[1:]
    assert re.fullmatch(f"R {TIME} volunteers@lists.example.org board@lists.example.org", lines[0])
    assert lines[1] == "V PASS PASS FAIL GRAY PASS"


def test_inject_twice_says_duplicate(project: Project, message_file: Path) -> None:
    """Injecting the same message again reports it as a duplicate."""
    routemail(project, "inject", str(message_file), "--to", "volunteers@lists.example.org")
    result = routemail(project, "inject", str(message_file), "--to", "board@lists.example.org")
    assert result.exit_code == 0
    assert result.stdout == f"{MSG_ID_TEXT} (duplicate)\n"


def test_inject_empty_input_is_refused(project: Project) -> None:
    """An empty message is refused with one line and nothing is queued."""
    result = routemail(project, "inject", "-", "--to", "volunteers@lists.example.org", input=b"")
    assert result.exit_code == 1
    assert result.stderr == "Error: empty message: nothing queued\n"
    assert list(project.spool.queue.iterdir()) == []
    assert list(project.spool.tmp.iterdir()) == []


def test_inject_bad_arguments(project: Project, message_file: Path) -> None:
    """A bad recipient or verdict is a usage error (exit 2) that names it."""
    bad_to = routemail(project, "inject", str(message_file), "--to", "nobody")
    assert bad_to.exit_code == 2
    assert "'nobody' is not an email address" in bad_to.stderr
    bad_v = routemail(
        project, "inject", str(message_file), "--to", "v@lists.example.org", "--verdicts", "dkim=OK"
    )
    assert bad_v.exit_code == 2
    assert "'dkim=OK': expected name=VALUE" in bad_v.stderr
    missing = routemail(project, "inject", str(project.root / "nope.eml"), "--to", "v@x.org")
    assert missing.exit_code == 2
    assert "nope.eml" in missing.stderr
    assert list(project.spool.queue.iterdir()) == []


def test_queue_json_lists_entries(project: Project, message_file: Path) -> None:
    """`queue --json` gives each entry's id, state and destinations."""
    empty = routemail(project, "queue")
    assert (empty.exit_code, empty.stdout) == (0, "queue is empty\n")
    routemail(project, "inject", str(message_file), "--to", "volunteers@lists.example.org")
    result = routemail(project, "queue", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == 1
    assert rows[0]["id"] == MSG_ID_TEXT
    assert rows[0]["state"] == "pending"
    assert rows[0]["destinations"] == ["volunteers@lists.example.org"]
    assert rows[0]["sent"] == 0
    table = routemail(project, "queue")
    assert table.stdout.splitlines()[0].split() == [
        "ID",
        "STATE",
        "RECEIVED",
        "SENT",
        "DESTINATIONS",
    ]
    assert table.stdout.splitlines()[1].split()[:2] == [MSG_ID_TEXT, "pending"]


def test_show_entry_by_prefix(project: Project, message_file: Path) -> None:
    """`show` takes a unique id prefix and prints headers and the timeline."""
    routemail(project, "inject", str(message_file), "--to", "volunteers@lists.example.org")
    result = routemail(project, "show", MSG_ID_TEXT[:6])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"id:      {MSG_ID_TEXT}\n" in out
    assert "state:   pending\n" in out
    assert "Rota for May" in out
    assert re.search(f"{TIME}  received for volunteers@lists.example.org\n", out)
    assert "dkim=PASS dmarc=PASS spf=PASS spam=PASS virus=PASS" in out
    as_json = json.loads(routemail(project, "show", MSG_ID_TEXT, "--json").stdout)
    assert [e["code"] for e in as_json["events"]] == ["R", "V"]


def test_show_unknown_id(project: Project) -> None:
    """`show` of an id that is not queued is one line pointing to `routemail queue`."""
    result = routemail(project, "show", "zzzz")
    assert result.exit_code == 1
    assert result.stderr == "Error: no queue entry 'zzzz': see `routemail queue`\n"


def test_check_reports_every_mistake_with_line_and_key(project: Project) -> None:
    """`check` on a broken lists.toml exits 2 with one "line N: key: message" line per mistake."""
    project.write_config(
        "[site]\n"
        'domain = "lists.example.org"\n'
        'admin = "not an address"\n'
        "\n"
        "[lists.board]\n"
        'posters = "everyone"\n'
        'members = ["chair@example.org", 42]\n'
    )
    result = routemail(project, "check")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert "error: lists.toml line 3: site.admin: 'not an address' is not an email address" in lines
    assert (
        "error: lists.toml line 6: lists.board.posters: expected members, moderators, anyone "
        "or a list of addresses" in lines
    )
    assert "error: lists.toml line 7: lists.board.members: 42 is not an email address" in lines
    assert all(re.match(r"error: lists\.toml line \d+: [\w.]+: ", line) for line in lines)
    assert "Traceback" not in result.output


def test_check_invalid_toml(project: Project) -> None:
    """A TOML syntax error is reported in one line, no traceback."""
    project.write_config("[site\n")
    result = routemail(project, "check")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")
    assert "lists.toml" in result.stderr
    assert "line 1" in result.stderr
    assert "not valid TOML" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", bytes(range(255, -1, -1)) * 3],
    ids=["png", "random"],
)
def test_inject_refuses_what_is_not_a_message(project: Project, data: bytes) -> None:
    """Bytes with no header block are refused with one line and exit 1; nothing is queued."""
    result = routemail(project, "inject", "-", "--to", "volunteers@lists.example.org", input=data)
    assert result.exit_code == 1
    assert result.output == (
        "Error: not an RFC 5322 message: it does not start with a header field such as "
        "From:; nothing queued\n"
    )
    assert project.spool.ids() == []


def test_check_good_config(project: Project) -> None:
    """`check` on the project's lists.toml passes and summarises it."""
    result = routemail(project, "check")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{project.config_path}: ok: 2 lists")


def mailxfer(
    project: Project, *args: str, secret: str = SECRET
) -> subprocess.CompletedProcess[str]:
    env = project.env()
    env["MAILRECV_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "mailxfer.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_mailxfer_post_queues_the_file(receiver: Receiver, message_file: Path) -> None:
    """`mailxfer post FILE --to ADDR --url URL` posts signed and prints the queue id."""
    result = mailxfer(
        receiver.project,
        "post",
        str(message_file),
        "--to",
        "volunteers@lists.example.org",
        "--verdicts",
        "spam=GRAY",
        "--url",
        receiver.mailrecv_url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == MSG_ID_TEXT + "\n"
    spool = receiver.project.spool
    assert spool.read_message(MSG_ID_TEXT) == MESSAGE
    assert spool.read_sidecar(MSG_ID_TEXT).splitlines()[2] == "V PASS PASS PASS GRAY PASS"


def test_mailxfer_post_again_says_duplicate_and_json_gives_the_answer(
    receiver: Receiver, message_file: Path
) -> None:
    """A second post of the same file prints `ID (duplicate)`; --json prints the answer."""
    args = ("post", str(message_file), "--to", "volunteers@lists.example.org")
    first = mailxfer(receiver.project, *args, "--url", receiver.mailrecv_url, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "id": MSG_ID_TEXT,
        "duplicate": False,
        "sha256": hashlib.sha256(MESSAGE).hexdigest(),
    }
    again = mailxfer(receiver.project, *args, "--url", receiver.mailrecv_url)
    assert (again.returncode, again.stdout) == (0, f"{MSG_ID_TEXT} (duplicate)\n")


def test_mailxfer_version(project: Project) -> None:
    """`mailxfer --version` names the package's version."""
    from importlib.metadata import version

    result = mailxfer(project, "--version")
    assert (result.returncode, result.stdout) == (0, f"mailxfer {version('routemail')}\n")


def test_mailxfer_post_wrong_secret(receiver: Receiver, message_file: Path) -> None:
    """With the wrong secret, `mailxfer post` exits 1 with one line naming the 401."""
    result = mailxfer(
        receiver.project,
        "post",
        str(message_file),
        "--to",
        "volunteers@lists.example.org",
        "--url",
        receiver.mailrecv_url,
        secret="wrong",
    )
    assert result.returncode == 1
    assert result.stderr == f"mailxfer: {receiver.mailrecv_url} answered 401: bad signature\n"
    assert result.stdout == ""
    assert list(receiver.project.spool.queue.iterdir()) == []


def test_mailxfer_post_unreachable(project: Project, message_file: Path) -> None:
    """A receiver that is not listening gives a one-line error, exit 1."""
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/mailrecv"
    result = mailxfer(
        project, "post", str(message_file), "--to", "v@lists.example.org", "--url", url
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"mailxfer: cannot reach {url}: ")
    assert len(result.stderr.splitlines()) == 1


def test_mailxfer_post_without_secret(project: Project, message_file: Path) -> None:
    """Without MAILRECV_SECRET, `mailxfer post` says to set it."""
    result = mailxfer(project, "post", str(message_file), "--to", "v@lists.example.org", secret="")
    assert result.returncode == 1
    assert "MAILRECV_SECRET is not set" in result.stderr
    assert len(result.stderr.splitlines()) == 1
