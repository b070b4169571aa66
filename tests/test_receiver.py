"""POST /mailrecv and GET /healthz against the real receiver under gunicorn on loopback."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import re
import shutil
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailxfer.post import post_message
from mailxfer.signing import format_verdicts, signed_headers
from tests.conftest import BASE_CONFIG, SECRET, Project, Receiver, running_receiver, start_receiver

PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
MESSAGE = (
    b"From: Ann Author <ann@example.com>\r\n"
    b"To: volunteers@lists.example.org\r\n"
    b"Subject: Saturday shift\r\n"
    b"Message-ID: <shift-42@example.com>\r\n"
    b"\r\n"
    b"Who can cover Saturday?\r\n"
)
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def b64md5(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.md5(data).digest()).rstrip(b"=").decode()


def post(
    receiver: Receiver,
    body: bytes,
    recipients: list[str] | None = None,
    *,
    secret: str = SECRET,
    now: float | None = None,
    verdicts: dict[str, str] | None = None,
) -> tuple[int, dict[str, object]]:
    result = post_message(
        receiver.mailrecv_url,
        secret.encode(),
        io.BytesIO(body),
        recipients or ["volunteers@lists.example.org"],
        verdicts or PASS,
        now=now,
    )
    return result.status, json.loads(result.body)


def connect(receiver: Receiver) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(receiver.url)
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)


def raw_post(receiver: Receiver, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """A POST with exactly these headers (for metadata the client would never send)."""
    conn = connect(receiver)
    try:
        conn.request("POST", "/mailrecv", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def signed(
    body: bytes,
    recipients: str = "volunteers@lists.example.org",
    verdicts: str = format_verdicts(PASS),
    *,
    secret: str = SECRET,
    declare: bool = False,
) -> dict[str, str]:
    """Headers signed over exactly the given recipient and verdict texts; with
    `declare`, naming the body's digest in X-Mailrecv-Body-SHA256 as mailxfer does."""
    from mailxfer.signing import signature

    ts = str(int(time.time()))
    digest = hashlib.sha256(body).hexdigest()
    headers = {
        "X-Mailrecv-Timestamp": ts,
        "X-Mailrecv-Recipients": recipients,
        "X-Mailrecv-Verdicts": verdicts,
        "X-Mailrecv-Signature": signature(secret.encode(), ts, recipients, verdicts, digest),
        "Content-Type": "message/rfc822",
    }
    if declare:
        headers["X-Mailrecv-Body-SHA256"] = digest
    return headers


def queue_names(project: Project) -> list[str]:
    return sorted(p.name for p in project.spool.queue.iterdir())


def assert_nothing_written(project: Project) -> None:
    spool = project.spool
    assert list(spool.queue.iterdir()) == []
    assert list(spool.tmp.iterdir()) == []


def test_signed_post_lands_on_disk(receiver: Receiver) -> None:
    """A signed post answers 200 with the id, after writing the message and a 0600 I+R+V
    sidecar (I: the stored file's SHA-256)."""
    status, answer = post(
        receiver,
        MESSAGE,
        ["volunteers@lists.example.org", "board@lists.example.org"],
        verdicts={**PASS, "spf": "GRAY"},
    )
    msg_id = b64md5(b"<shift-42@example.com>")
    sha256 = hashlib.sha256(MESSAGE).hexdigest()
    assert (status, answer) == (200, {"id": msg_id, "duplicate": False, "sha256": sha256})
    project = receiver.project
    assert queue_names(project) == [msg_id, msg_id + ".data"]
    spool = project.spool
    assert spool.message_path(msg_id).read_bytes() == MESSAGE
    lines = spool.sidecar_path(msg_id).read_text().splitlines()
    assert len(lines) == 3
    assert lines[0] == f"I {hashlib.sha256(MESSAGE).hexdigest()}"
    assert re.fullmatch(f"R {TIME} volunteers@lists.example.org board@lists.example.org", lines[1])
    assert lines[2] == "V PASS PASS GRAY PASS PASS"
    assert stat.S_IMODE(spool.sidecar_path(msg_id).stat().st_mode) == 0o600
    assert list(spool.tmp.iterdir()) == []


def test_duplicate_post_is_reported_and_appended(receiver: Receiver) -> None:
    """Posting the same message again answers duplicate: true and adds an R/V pair."""
    assert post(receiver, MESSAGE)[1]["duplicate"] is False
    status, answer = post(receiver, MESSAGE, ["board@lists.example.org"])
    assert (status, answer["duplicate"]) == (200, True)
    text = receiver.project.spool.read_sidecar(str(answer["id"]))
    assert [line.split()[0] for line in text.splitlines()] == ["I", "R", "V", "R", "V"]
    assert text.splitlines()[3].endswith(" board@lists.example.org")


def test_wrong_signature_is_401(receiver: Receiver) -> None:
    """A post signed with another secret answers 401 and writes nothing."""
    status, answer = post(receiver, MESSAGE, secret="not-the-secret")
    assert status == 401
    assert answer == {"error": "bad signature"}
    assert_nothing_written(receiver.project)


def test_tampered_body_is_401(receiver: Receiver) -> None:
    """A body changed after signing fails the signature check."""
    headers = signed(MESSAGE, "volunteers@lists.example.org", format_verdicts(PASS))
    status, answer = raw_post(receiver, MESSAGE + b"P.S. forged\r\n", headers)
    assert (status, answer) == (401, {"error": "bad signature"})
    assert_nothing_written(receiver.project)


def test_missing_signature_is_401(receiver: Receiver) -> None:
    """A post without a signature header answers 401 naming the header."""
    headers = signed(MESSAGE, "volunteers@lists.example.org", format_verdicts(PASS))
    del headers["X-Mailrecv-Signature"]
    status, answer = raw_post(receiver, MESSAGE, headers)
    assert status == 401
    assert "X-Mailrecv-Signature" in str(answer["error"])
    assert_nothing_written(receiver.project)


def _answer_to_headers_alone(receiver: Receiver, headers: dict[str, str], length: int) -> int:
    """Send only the request head of a POST announcing `length` body bytes; the status
    of the answer that comes without any of the body."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"POST /mailrecv HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{head}\r\n"
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
        sock.sendall(request.encode())
        # A receiver that reads the body first never answers: the timeout fails the test.
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def test_wrong_signature_is_refused_before_the_body_is_read(receiver: Receiver) -> None:
    """With the body's digest declared, a bad signature is answered 401 from the headers
    alone: a 40 MiB unsigned body is never read, let alone written."""
    body = MESSAGE + b"x" * (40 * 1024 * 1024 - len(MESSAGE))
    headers = signed(body, secret="not-the-secret", declare=True)
    assert _answer_to_headers_alone(receiver, headers, len(body)) == 401
    assert_nothing_written(receiver.project)


def test_a_refused_body_is_read_to_its_end_before_the_connection_closes(
    receiver: Receiver,
) -> None:
    """After answering 401 from the headers, the receiver reads the rest of the body into
    nothing before closing: a connection closed with input unread is reset, and the proxy
    in front, still sending the body, would answer 502 instead of the 401."""
    body = MESSAGE + b"x" * (32 * 1024 * 1024)
    headers = signed(body, secret="not-the-secret", declare=True)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /mailrecv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n{head}\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=60) as sock:
        sock.sendall(request + body)  # reset mid-body if the receiver stopped reading
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert answer.endswith(b'{"error":"bad signature"}\n')
    assert_nothing_written(receiver.project)


def test_declared_digest_lets_a_large_body_in(receiver: Receiver) -> None:
    """A 3 MiB body (past what is held in memory) with its signed digest is queued whole."""
    body = MESSAGE + b"y" * (3 * 1024 * 1024)
    status, answer = raw_post(receiver, body, signed(body, declare=True))
    assert status == 200, answer
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    assert receiver.project.spool.read_message(str(answer["id"])) == body


def test_body_not_matching_its_declared_digest_is_400(receiver: Receiver) -> None:
    """A correctly signed digest with another body of the same length: 400, nothing kept."""
    headers = signed(MESSAGE, declare=True)
    forged = MESSAGE.replace(b"Saturday?", b"Sunday?!?")
    assert len(forged) == len(MESSAGE)
    status, answer = raw_post(receiver, forged, headers)
    assert (status, answer) == (
        400,
        {"error": "the body does not match its X-Mailrecv-Body-SHA256"},
    )
    assert_nothing_written(receiver.project)


def test_malformed_declared_digest_is_400(receiver: Receiver) -> None:
    """A declared digest that is not 64 lowercase hex digits is refused, naming the header."""
    headers = signed(MESSAGE, declare=True)
    headers["X-Mailrecv-Body-SHA256"] = headers["X-Mailrecv-Body-SHA256"].upper()
    status, answer = raw_post(receiver, MESSAGE, headers)
    assert (status, answer) == (
        400,
        {"error": "X-Mailrecv-Body-SHA256 must be 64 lowercase hex digits"},
    )
    assert_nothing_written(receiver.project)


def test_undeclared_digest_is_served_only_in_memory(receiver: Receiver) -> None:
    """A sender without X-Mailrecv-Body-SHA256 (an older mailxfer) is still served for a
    body held in memory; a larger one is refused from its headers, naming the fix."""
    status, answer = raw_post(receiver, MESSAGE, signed(MESSAGE))
    assert status == 200, answer
    big = MESSAGE + b"z" * (2 * 1024 * 1024)
    status, answer = raw_post(receiver, big, signed(big))
    assert status == 400
    assert "needs X-Mailrecv-Body-SHA256" in str(answer["error"])
    assert "upgrade mailxfer" in str(answer["error"])
    msg_id = b64md5(b"<shift-42@example.com>")
    assert queue_names(receiver.project) == [msg_id, msg_id + ".data"]


@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10",
        bytes(range(256)) * 4,
        b"Just a line of text, no header block at all.\r\n",
        b"\r\nA body with an empty header block.\r\n",
    ],
    ids=["png", "random", "text", "no-headers"],
)
def test_not_a_message_is_400(receiver: Receiver, body: bytes) -> None:
    """Bytes that do not open with a header field are refused with one clear line, not queued."""
    status, answer = raw_post(receiver, body, signed(body, declare=True))
    assert (status, answer) == (
        400,
        {"error": "not an RFC 5322 message: it does not start with a header field such as From:"},
    )
    assert_nothing_written(receiver.project)


def test_stale_timestamp_is_401(receiver: Receiver) -> None:
    """A correctly signed post more than 300 s old answers 401 naming the skew."""
    status, answer = post(receiver, MESSAGE, now=time.time() - 400)
    assert status == 401
    assert str(answer["error"]).startswith("stale timestamp")
    assert_nothing_written(receiver.project)


def test_future_timestamp_is_401(receiver: Receiver) -> None:
    """A timestamp more than 300 s in the future is just as stale."""
    status, _ = post(receiver, MESSAGE, now=time.time() + 400)
    assert status == 401
    assert_nothing_written(receiver.project)


def test_missing_recipients_is_400(receiver: Receiver) -> None:
    """Signed metadata with no recipients answers 400 naming the header."""
    headers = signed(MESSAGE, "", format_verdicts(PASS))
    status, answer = raw_post(receiver, MESSAGE, headers)
    assert status == 400
    assert answer == {"error": "missing X-Mailrecv-Recipients"}
    assert_nothing_written(receiver.project)


def test_bad_recipient_is_400(receiver: Receiver) -> None:
    """A recipient that is not an address answers 400 quoting it."""
    headers = signed(MESSAGE, "volunteers@lists.example.org,not an address", format_verdicts(PASS))
    status, answer = raw_post(receiver, MESSAGE, headers)
    assert status == 400
    assert "'not an address' is not an address" in str(answer["error"])
    assert_nothing_written(receiver.project)


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ("dkim=PASS dmarc=PASS spf=PASS spam=PASS virus=MAYBE", "'virus=MAYBE'"),
        ("dkim=PASS dmarc=PASS spf=PASS spam=PASS", "missing virus"),
        ("dkim=PASS dmarc=PASS spf=PASS spam=PASS virus=PASS bogus=PASS", "'bogus=PASS'"),
        ("", "missing dkim"),
    ],
)
def test_malformed_verdicts_are_400(receiver: Receiver, verdicts: str, expected: str) -> None:
    """Verdicts that are not five known name=VALUE pairs answer 400 saying what is wrong."""
    headers = signed(MESSAGE, "volunteers@lists.example.org", verdicts)
    status, answer = raw_post(receiver, MESSAGE, headers)
    assert status == 400
    assert expected in str(answer["error"])
    assert_nothing_written(receiver.project)


def test_bad_timestamp_is_400(receiver: Receiver) -> None:
    """A timestamp that is not unix seconds answers 400."""
    headers = signed(MESSAGE, "volunteers@lists.example.org", format_verdicts(PASS))
    headers["X-Mailrecv-Timestamp"] = "yesterday"
    status, answer = raw_post(receiver, MESSAGE, headers)
    assert (status, answer) == (400, {"error": "X-Mailrecv-Timestamp must be unix seconds"})
    assert_nothing_written(receiver.project)


def test_empty_body_is_400(receiver: Receiver) -> None:
    """A signed post of zero bytes is not a message."""
    headers = signed(b"", "volunteers@lists.example.org", format_verdicts(PASS))
    status, answer = raw_post(receiver, b"", headers)
    assert (status, answer) == (400, {"error": "empty message body"})
    assert_nothing_written(receiver.project)


@pytest.fixture
def small_receiver(project: Project) -> Iterator[Receiver]:
    """The receiver with [receiver] max_size = 4096 in lists.toml."""
    project.write_config(BASE_CONFIG.replace("[receiver]\n", "[receiver]\nmax_size = 4096\n"))
    with running_receiver(project) as r:
        yield r


def test_oversize_body_is_413(small_receiver: Receiver) -> None:
    """A body over [receiver] max_size answers 413 and writes nothing; one at the limit passes."""
    big = MESSAGE + b"x" * 5000
    status, answer = post(small_receiver, big)
    assert status == 413
    assert "4096-byte limit" in str(answer["error"])
    assert_nothing_written(small_receiver.project)
    exact = MESSAGE + b"y" * (4096 - len(MESSAGE))
    assert post(small_receiver, exact)[0] == 200


def test_chunked_upload_over_the_limit_is_413(small_receiver: Receiver) -> None:
    """A chunked body (no Content-Length) is cut off at the limit while reading: 413."""
    body = MESSAGE + b"z" * 20_000
    headers = signed(body, "volunteers@lists.example.org", format_verdicts(PASS))
    conn = connect(small_receiver)
    try:
        chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))
        # The server may answer and close before every chunk is sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request("POST", "/mailrecv", body=chunks, headers=headers, encode_chunked=True)
        response = conn.getresponse()
        status, answer = response.status, json.loads(response.read())
    finally:
        conn.close()
    assert status == 413
    assert "4096-byte limit" in answer["error"]
    assert_nothing_written(small_receiver.project)


def test_chunked_upload_within_the_limit_is_queued(small_receiver: Receiver) -> None:
    """A chunked body within the limit is queued byte for byte."""
    headers = signed(MESSAGE, "volunteers@lists.example.org", format_verdicts(PASS))
    conn = connect(small_receiver)
    try:
        chunks = (MESSAGE[i : i + 7] for i in range(0, len(MESSAGE), 7))
        conn.request("POST", "/mailrecv", body=chunks, headers=headers, encode_chunked=True)
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200
    assert small_receiver.project.spool.read_message(answer["id"]) == MESSAGE


@pytest.mark.parametrize("workers", [2])
def test_fifty_concurrent_posts_share_one_entry(receiver: Receiver) -> None:
    """50 simultaneous posts of one message to 50 lists: one file, one sidecar, 50 whole R lines."""
    addresses = [f"list{n:02d}@lists.example.org" for n in range(50)]
    results: list[tuple[int, dict[str, object]]] = []
    barrier = threading.Barrier(50)

    def send(address: str) -> None:
        barrier.wait()
        results.append(post(receiver, MESSAGE, [address]))

    threads = [threading.Thread(target=send, args=(a,)) for a in addresses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s for s, _ in results] == [200] * 50
    assert sum(a["duplicate"] is False for _, a in results) == 1
    msg_id = b64md5(b"<shift-42@example.com>")
    project = receiver.project
    assert queue_names(project) == [msg_id, msg_id + ".data"]
    assert project.spool.read_message(msg_id) == MESSAGE
    lines = project.spool.sidecar_path(msg_id).read_text().splitlines()
    r_lines = [line for line in lines if line.startswith("R ")]
    v_lines = [line for line in lines if line.startswith("V ")]
    assert lines[0] == f"I {hashlib.sha256(MESSAGE).hexdigest()}"
    assert len(lines) == 101
    assert all(re.fullmatch(f"R {TIME} list\\d\\d@lists.example.org", x) for x in r_lines)
    assert v_lines == ["V PASS PASS PASS PASS PASS"] * 50
    assert sorted(line.split()[2] for line in r_lines) == addresses
    assert list(project.spool.tmp.iterdir()) == []


def test_healthz(receiver: Receiver) -> None:
    """GET /healthz answers 200 {"ok": true} while the spool is writable."""
    with urllib.request.urlopen(receiver.url + "/healthz", timeout=10) as response:
        assert (response.status, json.loads(response.read())) == (200, {"ok": True})


def _block(directory: Path) -> None:
    """A plain file where the directory should be: no process, root included, can write
    into it (tests run as root, for whom permission bits are no obstacle)."""
    shutil.rmtree(directory)
    directory.write_text("in the way\n")


def _healthz_error(receiver: Receiver) -> str:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(receiver.url + "/healthz", timeout=10)
    with info.value as response:
        assert response.code == 503
        return str(json.loads(response.read())["error"])


def test_unwritable_queue_is_503(receiver: Receiver) -> None:
    """With QUEUE/ unusable, a valid post answers 503 (the sender retries), /healthz too."""
    root = receiver.project.spool.root
    _block(root / "QUEUE")
    status, answer = post(receiver, MESSAGE)
    assert status == 503
    assert answer == {"error": "spool not writable; retry later"}
    assert "QUEUE" in _healthz_error(receiver)
    assert (root / "QUEUE").read_text() == "in the way\n"
    assert list((root / "tmp").iterdir()) == []
    # Once the operator fixes the spool, the sender's retry succeeds.
    (root / "QUEUE").unlink()
    assert post(receiver, MESSAGE)[0] == 200


def test_unwritable_tmp_is_reported_but_mail_still_lands(receiver: Receiver) -> None:
    """tmp/ serves only filesystems without O_TMPFILE: mail still lands, /healthz says not ok."""
    root = receiver.project.spool.root
    _block(root / "tmp")
    assert "tmp" in _healthz_error(receiver)
    status, answer = post(receiver, MESSAGE)
    assert status == 200
    assert (root / "QUEUE" / answer["id"]).read_bytes() == MESSAGE
    assert (root / "tmp").read_text() == "in the way\n"


def test_missing_spool_is_created_by_the_first_post(receiver: Receiver) -> None:
    """An operator who removes data/maillist/ loses nothing: the next post recreates it."""
    root = receiver.project.spool.root
    shutil.rmtree(root)
    status, answer = post(receiver, MESSAGE)
    assert status == 200
    assert (root / "QUEUE" / answer["id"]).read_bytes() == MESSAGE


def test_healthz_creates_nothing(receiver: Receiver) -> None:
    """/healthz only looks: a removed spool that the next post can make is healthy and
    stays absent (a check that made directories raced operators and the tests above)."""
    root = receiver.project.spool.root
    shutil.rmtree(root)
    with urllib.request.urlopen(receiver.url + "/healthz", timeout=10) as response:
        assert response.status == 200
    assert not root.exists()


def test_unknown_path_is_json_404(receiver: Receiver) -> None:
    """Any other URL answers a JSON error, not an HTML page."""
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(receiver.url + "/nothing-here", timeout=10)
    with info.value as response:
        assert response.code == 404
        assert "error" in json.loads(response.read())


def test_on_receipt_run_starts_routemail(project: Project) -> None:
    """With on_receipt = "run", a post starts `routemail run`, which processes the entry."""
    project.write_config(BASE_CONFIG.replace('on_receipt = "none"', 'on_receipt = "run"'))
    r = start_receiver(project)
    try:
        status, answer = post(r, MESSAGE)
        assert status == 200
        spool = project.spool
        msg_id = str(answer["id"])
        month = time.strftime("%Y-%m", time.gmtime())
        log = spool.root / "log" / month
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not spool.is_pending(msg_id) and log.exists() and msg_id in log.read_text():
                break
            time.sleep(0.2)
        assert not spool.is_pending(msg_id)
        assert msg_id in log.read_text()
    finally:
        r.stop()


def _runs_started_for(project: Project) -> list[int]:
    """Pids of `routemail run` processes working on this project's data directory."""
    found = []
    marker = f"ROUTEMAIL_DATA={project.data_dir.resolve()}".encode()
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"routemail\0run" in cmdline and marker in environ.split(b"\0"):
            found.append(int(proc.name))
    return found


def test_a_working_run_is_handed_new_mail_instead_of_a_new_process(project: Project) -> None:
    """While a run holds the lock, posts leave it the RESCAN mark and start no process;
    once the lock is free, the next post starts a run that routes everything."""
    from filelock import FileLock

    project.write_config(BASE_CONFIG.replace('on_receipt = "none"', 'on_receipt = "run"'))
    spool = project.spool.ensure()
    r = start_receiver(project)
    try:
        with FileLock(str(spool.lock_path)):
            ids = []
            for n in range(8):
                raw = MESSAGE.replace(b"Message-ID: <", f"Message-ID: <held-{n}-".encode())
                status, answer = post(r, raw)
                assert status == 200
                ids.append(str(answer["id"]))
                assert _runs_started_for(project) == []
            assert spool.rescan_mark.exists()
            assert all(spool.is_pending(i) for i in ids)
        status, answer = post(r, MESSAGE)
        assert status == 200
        ids.append(str(answer["id"]))
        deadline = time.monotonic() + 60
        while any(spool.is_pending(i) for i in ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(spool.is_pending(i) for i in ids)
    finally:
        r.stop()


def test_each_post_gets_one_log_line_with_its_queue_id(receiver: Receiver) -> None:
    """The receiver logs what it did with each post (the queue id, or why it refused)."""
    status, answer = post(receiver, MESSAGE)
    assert status == 200
    assert post(receiver, MESSAGE, secret="wrong")[0] == 401
    deadline = time.monotonic() + 10
    log = ""
    while time.monotonic() < deadline and "refused" not in log:
        time.sleep(0.1)
        log = receiver.log_path.read_text()
    assert f"queued {answer['id']} from 127.0.0.1" in log
    assert "refused a post from 127.0.0.1: 401 bad signature" in log


def _receipt_line_for_forwarded_post(receiver: Receiver) -> str:
    """Post with an X-Forwarded-For header; the log line that names the queue id."""
    headers = signed(MESSAGE, "volunteers@lists.example.org", format_verdicts(PASS))
    headers["X-Forwarded-For"] = "203.0.113.9"
    status, answer = raw_post(receiver, MESSAGE, headers)
    assert status == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in receiver.log_path.read_text().splitlines():
            if f"queued {answer['id']}" in line:
                return line
        time.sleep(0.1)
    raise AssertionError("no receipt line in the log")


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(receiver: Receiver) -> None:
    """Anyone can send X-Forwarded-For: by default the peer's own address is logged."""
    assert _receipt_line_for_forwarded_post(receiver).endswith("from 127.0.0.1")


def test_trusted_proxy_passes_on_the_client_address(project: Project) -> None:
    """With trusted_proxies = 1 the address the proxy reports is the client's."""
    project.write_config(BASE_CONFIG.replace("[receiver]\n", "[receiver]\ntrusted_proxies = 1\n"))
    with running_receiver(project) as r:
        assert _receipt_line_for_forwarded_post(r).endswith("from 203.0.113.9")


def test_no_secret_is_503(project: Project) -> None:
    """A receiver started without a shared secret refuses mail with 503 and says why."""
    with running_receiver(project, extra_env={"MAILRECV_SECRET": None}) as r:
        status, answer = post(r, MESSAGE)
        assert status == 503
        assert "secret" in str(answer["error"])
        assert_nothing_written(project)


def test_signed_headers_match_the_documented_string() -> None:
    """The signature is HMAC-SHA256 over timestamp, recipients, verdicts and body digest."""
    import hmac

    digest = hashlib.sha256(MESSAGE).hexdigest()
    headers = signed_headers(b"k", 1700000000, ["a@x.org", "b@x.org"], PASS, digest)
    text = f"1700000000\na@x.org,b@x.org\n{format_verdicts(PASS)}\n{digest}"
    expected = hmac.new(b"k", text.encode(), hashlib.sha256).hexdigest()
    assert headers["X-Mailrecv-Signature"] == expected
    assert headers["X-Mailrecv-Verdicts"] == "dkim=PASS dmarc=PASS spf=PASS spam=PASS virus=PASS"
