"""deploy/mailrecv.cgi under a real CGI web server (lighttpd with mod_cgi) on loopback."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailxfer.post import post_message
from tests.conftest import ROOT, SECRET, Project, free_port

LIGHTTPD = shutil.which("lighttpd") or next(
    (p for p in ("/usr/sbin/lighttpd", "/usr/local/sbin/lighttpd") if Path(p).exists()), None
)
# CI installs lighttpd (`make system-deps`), so there a missing one is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    LIGHTTPD is None and not os.environ.get("CI"),
    reason="lighttpd is not installed: `make system-deps` installs it",
)
MESSAGE = (
    b"From: ann@example.com\r\nTo: volunteers@lists.example.org\r\nSubject: via CGI\r\n"
    b"Message-ID: <cgi@example.com>\r\n\r\nhello through mod_cgi\r\n"
)
ALL_PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


@dataclass
class CgiServer:
    base: str
    error_log: Path

    @property
    def mailrecv_url(self) -> str:
        return self.base + "/cgi-bin/mailrecv.cgi/mailrecv"


def install_cgi(cgi_bin: Path, interpreter: str) -> None:
    """Install the script as the operations guide says: copied, shebang set to the
    project's interpreter."""
    text = (ROOT / "deploy" / "mailrecv.cgi").read_text()
    first, _, rest = text.partition("\n")
    assert first.startswith("#!")
    script = cgi_bin / "mailrecv.cgi"
    script.write_text(f"#!{interpreter}\n{rest}")
    script.chmod(0o755)


def start_lighttpd(
    root: Path, project: Project, home: Path, interpreter: str
) -> tuple[subprocess.Popen[bytes], str]:
    cgi_bin = root / "cgi-bin"
    cgi_bin.mkdir(parents=True)
    (root / "www").mkdir()
    (root / "upload").mkdir()
    install_cgi(cgi_bin, interpreter)
    port = free_port()
    conf = root / "lighttpd.conf"
    conf.write_text(
        f"""
server.modules = ("mod_alias", "mod_cgi", "mod_setenv")
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{root / "www"}"
server.errorlog = "{root / "error.log"}"
server.breakagelog = "{root / "cgi-stderr.log"}"
server.upload-dirs = ("{root / "upload"}")
alias.url = ("/cgi-bin/" => "{cgi_bin}/")
$HTTP["url"] =~ "^/cgi-bin/" {{
    cgi.assign = (".cgi" => "")
}}
setenv.add-environment = (
    "ROUTEMAIL_HOME" => "{home}",
    "ROUTEMAIL_CONFIG" => "{project.config_path}",
    "ROUTEMAIL_DATA" => "{project.data_dir}",
    "MAILRECV_SECRET" => "{SECRET}",
)
"""
    )
    process = subprocess.Popen(
        [str(LIGHTTPD), "-D", "-f", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_ready(process: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"lighttpd exited: {err}")
        try:
            with urllib.request.urlopen(base + "/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is listening
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("lighttpd did not answer within 30 s")


def run_server(
    tmp: Path, project: Project, home: Path, interpreter: str = sys.executable
) -> Iterator[CgiServer]:
    process, base = start_lighttpd(tmp / "httpd", project, home, interpreter)
    try:
        wait_ready(process, base)
        yield CgiServer(base, tmp / "httpd" / "cgi-stderr.log")
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stderr:
            process.stderr.close()


@pytest.fixture
def cgi_server(tmp_path: Path, project: Project) -> Iterator[CgiServer]:
    """lighttpd on a loopback port running deploy/mailrecv.cgi against the project."""
    yield from run_server(tmp_path, project, ROOT)


@pytest.fixture
def broken_cgi_server(tmp_path: Path, project: Project) -> Iterator[CgiServer]:
    """lighttpd running the CGI with ROUTEMAIL_HOME pointing at an empty folder and
    the interpreter unable to find the project."""
    empty = tmp_path / "empty"
    empty.mkdir()
    # -S keeps site-packages (and the editable install) off sys.path.
    yield from run_server(tmp_path, project, empty, f"{sys.executable} -S")


def test_signed_post_through_cgi_lands_in_spool(cgi_server: CgiServer, project: Project) -> None:
    """A signed POST through lighttpd's mod_cgi answers 200 with the id and is spooled."""
    result = post_message(
        cgi_server.mailrecv_url,
        SECRET.encode(),
        io.BytesIO(MESSAGE),
        ["volunteers@lists.example.org"],
        ALL_PASS,
    )
    assert result.status == 200, result.body
    answer = json.loads(result.body)
    spool = project.spool
    assert spool.ids() == [answer["id"]]
    assert answer["duplicate"] is False
    assert spool.read_message(answer["id"]) == MESSAGE
    assert spool.history(answer["id"]).destinations == ["volunteers@lists.example.org"]


def test_bad_signature_through_cgi_is_a_json_401(cgi_server: CgiServer, project: Project) -> None:
    """A wrong secret gets the receiver's JSON 401 through CGI, and nothing is spooled."""
    result = post_message(
        cgi_server.mailrecv_url,
        b"wrong-secret",
        io.BytesIO(MESSAGE),
        ["volunteers@lists.example.org"],
        ALL_PASS,
    )
    assert result.status == 401
    assert json.loads(result.body) == {"error": "bad signature"}
    assert project.spool.ids() == []


def test_healthz_through_cgi(cgi_server: CgiServer) -> None:
    """GET /healthz answers 200 through CGI when the spool is writable."""
    with urllib.request.urlopen(
        cgi_server.base + "/cgi-bin/mailrecv.cgi/healthz", timeout=30
    ) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"ok": True}


def test_cgi_that_cannot_find_the_project_answers_json_503(
    broken_cgi_server: CgiServer, project: Project
) -> None:
    """A CGI install that cannot import the project answers a JSON 503 naming what to
    check (so senders retry), with the traceback only in the server's error log."""
    result = post_message(
        broken_cgi_server.mailrecv_url,
        SECRET.encode(),
        io.BytesIO(MESSAGE),
        ["volunteers@lists.example.org"],
        ALL_PASS,
    )
    assert result.status == 503
    assert "ROUTEMAIL_HOME" in json.loads(result.body)["error"]
    assert "Traceback" not in result.body
    assert "ModuleNotFoundError" in broken_cgi_server.error_log.read_text()
    assert project.spool.ids() == []
