"""mailxfer against moto running as a server and the real receiver under gunicorn."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from mailxfer import handler
from mailxfer.events import EventError
from mailxfer.secrets import SecretError
from mailxfer.transfer import NeedsPerson, TransferFailed
from tests.conftest import BASE_CONFIG, SECRET, Project, Receiver, free_port, start_receiver

DATA = Path(__file__).resolve().parent / "data" / "ses"
BUCKET = "routemail-inbound"
PREFIX = "inbound/"
ALL_PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / name).read_text()))


def stored(name: str) -> bytes:
    return (DATA / name).read_bytes()


@dataclass
class Aws:
    url: str
    s3: Any

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    def keys(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET)
        return [o["Key"] for o in listing.get("Contents", [])]


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """A fresh moto state with the inbound bucket, reached through AWS_ENDPOINT_URL."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "MAILXFER_BUCKET": BUCKET,
        "MAILXFER_PREFIX": PREFIX,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "MAILRECV_SECRET_SSM", "MAILRECV_SECRET_ARN", "MAILXFER_DOMAINS"):
        monkeypatch.delenv(name, raising=False)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return Aws(moto_url, s3)


@pytest.fixture
def to_receiver(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """The handler's environment pointed at the real receiver with the right secret."""
    monkeypatch.setenv("MAILRECV_URL", receiver.mailrecv_url)
    monkeypatch.setenv("MAILRECV_SECRET", SECRET)
    return receiver


@contextlib.contextmanager
def answering(status: int, body: bytes, content_type: str = "application/json") -> Iterator[str]:
    """A web server on loopback that reads each POST and answers it with status and body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mailrecv"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def unavailable() -> Iterator[str]:
    """A receiver on loopback that answers every POST with 503."""
    with answering(503, b'{"error": "spool not writable; retry later"}') as url:
        yield url


def lambda_event(message_id: str) -> dict[str, Any]:
    event = load_event("lambda-action.json")
    event["Records"][0]["ses"]["mail"]["messageId"] = message_id
    return event


def run_sweep(project: Project, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_sweep_env(url, *extra)


def run_sweep_env(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`mailxfer sweep` against the bucket, in this process's environment (moto's endpoint)."""
    import os

    env = dict(os.environ)
    env["MAILRECV_SECRET"] = SECRET
    return subprocess.run(
        [sys.executable, "-m", "mailxfer.cli", "sweep", "--bucket", BUCKET, "--url", url, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lambda_action_event_reaches_spool_and_object_is_deleted(
    aws: Aws, to_receiver: Receiver
) -> None:
    """An SES Lambda-action event moves the stored object into the spool, routed on
    receipt.recipients with the event's verdicts, and deletes the object."""
    message_id = "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1"
    aws.put(PREFIX + message_id, stored("stored-pass.eml"))
    result = handler(lambda_event(message_id), None)
    spool = to_receiver.project.spool
    assert spool.ids() == result["delivered"]
    (queued,) = spool.ids()
    assert spool.read_message(queued) == stored("stored-pass.eml")
    history = spool.history(queued)
    assert history.destinations == ["volunteers@lists.example.org"]
    assert history.verdicts == ALL_PASS
    assert spool.pending_ids() == [queued]
    assert aws.keys() == []


def test_event_delivered_twice_queues_once(aws: Aws, to_receiver: Receiver) -> None:
    """Lambda may deliver an event twice: the second finds the object gone and succeeds."""
    message_id = "twice0000000000000000000000000000000000"
    aws.put(PREFIX + message_id, stored("stored-pass.eml"))
    handler(lambda_event(message_id), None)
    again = handler(lambda_event(message_id), None)
    assert again["delivered"] == []
    assert len(to_receiver.project.spool.ids()) == 1


def test_503_leaves_object_and_sweep_delivers_it_once(
    aws: Aws, receiver: Receiver, unavailable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver answering 503 makes the handler raise and leaves the object; a later
    sweep delivers it exactly once, and a second sweep finds nothing to do."""
    monkeypatch.setenv("MAILRECV_URL", unavailable)
    monkeypatch.setenv("MAILRECV_SECRET", SECRET)
    message_id = "down00000000000000000000000000000000000"
    aws.put(PREFIX + message_id, stored("stored-pass.eml"))
    with pytest.raises(TransferFailed, match="503") as failed:
        handler(lambda_event(message_id), None)
    assert not isinstance(failed.value, NeedsPerson)
    assert aws.keys() == [PREFIX + message_id]
    assert receiver.project.spool.ids() == []

    first = run_sweep(
        receiver.project, receiver.mailrecv_url, "--prefix", PREFIX, "--older-than", "0s"
    )
    assert first.returncode == 0, first.stderr
    assert f"delivered s3://{BUCKET}/{PREFIX}{message_id}\n" in first.stdout
    spool = receiver.project.spool
    (queued,) = spool.ids()
    # Swept mail has only its stored headers: Received names the one recipient.
    assert spool.history(queued).destinations == ["volunteers@lists.example.org"]
    assert spool.history(queued).verdicts == ALL_PASS
    assert aws.keys() == []

    second = run_sweep(receiver.project, receiver.mailrecv_url, "--older-than", "0s")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("0 delivered")
    assert spool.ids() == [queued]


def test_sweep_leaves_young_objects(aws: Aws, receiver: Receiver) -> None:
    """Objects younger than --older-than are left for the Lambda, and counted."""
    aws.put(PREFIX + "young", stored("stored-pass.eml"))
    done = run_sweep(receiver.project, receiver.mailrecv_url, "--older-than", "1h")
    assert done.returncode == 0, done.stderr
    assert "1 younger than the cut-off" in done.stdout
    assert aws.keys() == [PREFIX + "young"]
    assert receiver.project.spool.ids() == []


def test_sweep_reports_unreachable_receiver(aws: Aws, project: Project) -> None:
    """A sweep that cannot reach the receiver exits 1, names it, and keeps the object."""
    aws.put(PREFIX + "kept", stored("stored-pass.eml"))
    url = f"http://127.0.0.1:{free_port()}/mailrecv"
    done = run_sweep(project, url, "--older-than", "0s")
    assert done.returncode == 1
    assert f"cannot reach {url}" in done.stderr
    assert "Traceback" not in done.stderr
    assert aws.keys() == [PREFIX + "kept"]


def test_s3_event_takes_verdicts_and_recipient_from_stored_headers(
    aws: Aws, to_receiver: Receiver
) -> None:
    """An S3 ObjectCreated event (URL-encoded key) carries no verdicts: they and the
    recipient come from the headers SES wrote, not from ones the sender forged."""
    aws.put("inbound/s3 event:headers", stored("stored-fail-headers.eml"))
    event = load_event("s3-object-created.json")
    event["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    handler(event, None)
    spool = to_receiver.project.spool
    (queued,) = spool.ids()
    history = spool.history(queued)
    assert history.destinations == ["board@lists.example.org"]
    assert history.verdicts == {
        "dkim": "FAIL",
        "dmarc": "FAIL",
        "spf": "FAIL",
        "spam": "FAIL",
        "virus": "PASS",
    }
    assert aws.keys() == []


def test_sns_wrapped_receipt_notification(aws: Aws, to_receiver: Receiver) -> None:
    """An SNS notification wrapping an SES receipt names the object in its S3 action
    and carries the verdicts and recipients, which win over the stored headers."""
    message = json.loads((DATA / "sns-message.json").read_text())
    key = message["receipt"]["action"]["objectKey"]
    aws.put(key, stored("stored-sns.eml"))
    event = load_event("sns-receipt.json")
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    handler(event, None)
    spool = to_receiver.project.spool
    (queued,) = spool.ids()
    history = spool.history(queued)
    assert history.destinations == ["board@lists.example.org"]
    assert history.verdicts == {
        "dkim": "FAIL",
        "dmarc": "FAIL",
        "spf": "GRAY",
        "spam": "PASS",
        "virus": "PASS",
    }
    assert aws.keys() == []


def test_wrong_secret_needs_a_person_and_keeps_object(
    aws: Aws, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 raises NeedsPerson (retrying will not help), leaving the object in place."""
    monkeypatch.setenv("MAILRECV_URL", receiver.mailrecv_url)
    monkeypatch.setenv("MAILRECV_SECRET", "not-the-receivers-secret")
    message_id = "badsecret000000000000000000000000000000"
    aws.put(PREFIX + message_id, stored("stored-pass.eml"))
    with pytest.raises(NeedsPerson, match=r"retrying will not help.*answered 401"):
        handler(lambda_event(message_id), None)
    assert aws.keys() == [PREFIX + message_id]
    assert receiver.project.spool.ids() == []


def test_oversized_message_needs_a_person(
    aws: Aws, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 413 from the receiver raises NeedsPerson naming the size setting to raise."""
    project.write_config(BASE_CONFIG.replace("[receiver]\n", "[receiver]\nmax_size = 200\n"))
    small = start_receiver(project)
    try:
        monkeypatch.setenv("MAILRECV_URL", small.mailrecv_url)
        monkeypatch.setenv("MAILRECV_SECRET", SECRET)
        message_id = "toobig00000000000000000000000000000000"
        aws.put(PREFIX + message_id, stored("stored-pass.eml"))
        with pytest.raises(NeedsPerson, match=r"answered 413.*max_size"):
            handler(lambda_event(message_id), None)
        assert aws.keys() == [PREFIX + message_id]
    finally:
        small.stop()


def test_secret_from_ssm_securestring(
    aws: Aws, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MAILRECV_SECRET_SSM the secret is read from SSM Parameter Store, decrypted."""
    boto3.client("ssm").put_parameter(
        Name="/routemail/test-ssm-secret", Value=SECRET, Type="SecureString"
    )
    monkeypatch.delenv("MAILRECV_SECRET", raising=False)
    monkeypatch.setenv("MAILRECV_SECRET_SSM", "/routemail/test-ssm-secret")
    monkeypatch.setenv("MAILRECV_URL", receiver.mailrecv_url)
    message_id = "ssm00000000000000000000000000000000000"
    aws.put(PREFIX + message_id, stored("stored-pass.eml"))
    handler(lambda_event(message_id), None)
    assert len(receiver.project.spool.ids()) == 1
    assert aws.keys() == []


def test_secret_from_secrets_manager(
    aws: Aws, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MAILRECV_SECRET_ARN the secret is read from Secrets Manager."""
    arn = boto3.client("secretsmanager").create_secret(
        Name="routemail/test-sm-secret", SecretString=SECRET
    )["ARN"]
    monkeypatch.delenv("MAILRECV_SECRET", raising=False)
    monkeypatch.setenv("MAILRECV_SECRET_ARN", arn)
    monkeypatch.setenv("MAILRECV_URL", receiver.mailrecv_url)
    message_id = "secretsmanager000000000000000000000000"
    aws.put(PREFIX + message_id, stored("stored-pass.eml"))
    handler(lambda_event(message_id), None)
    assert len(receiver.project.spool.ids()) == 1


def test_missing_ssm_parameter_names_the_setting(
    aws: Aws, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SSM name that does not exist fails with a message naming MAILRECV_SECRET_SSM,
    and the object stays."""
    monkeypatch.delenv("MAILRECV_SECRET", raising=False)
    monkeypatch.setenv("MAILRECV_SECRET_SSM", "/routemail/no-such-parameter")
    monkeypatch.setenv("MAILRECV_URL", receiver.mailrecv_url)
    message_id = "nossm000000000000000000000000000000000"
    aws.put(PREFIX + message_id, stored("stored-pass.eml"))
    with pytest.raises(SecretError, match=r"ParameterNotFound.*MAILRECV_SECRET_SSM"):
        handler(lambda_event(message_id), None)
    assert aws.keys() == [PREFIX + message_id]


def test_unknown_event_is_refused_clearly(aws: Aws, to_receiver: Receiver) -> None:
    """An event of no known shape raises EventError saying what was expected."""
    with pytest.raises(EventError, match="not an SES, S3 or SNS event"):
        handler({"hello": "world"}, None)
    broken = copy.deepcopy(load_event("lambda-action.json"))
    del broken["Records"][0]["ses"]["mail"]["messageId"]
    with pytest.raises(EventError, match=r"ses\.mail\.messageId is missing"):
        handler(broken, None)


def test_scheduled_sweep_event(aws: Aws, to_receiver: Receiver) -> None:
    """The template's schedule sends {"sweep": ...}: the handler sweeps MAILXFER_BUCKET."""
    aws.put(PREFIX + "leftover", stored("stored-pass.eml"))
    result = handler({"sweep": {"older_than": "0s"}}, None)
    assert result["delivered"] == [PREFIX + "leftover"]
    assert len(to_receiver.project.spool.ids()) == 1
    assert aws.keys() == []


def test_a_welcome_page_is_not_a_receipt(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL that answers `200 <html>Welcome</html>` (a mistyped path on a web server)
    stored nothing: the handler fails naming what came back, and neither it nor a sweep
    deletes the object."""
    monkeypatch.setenv("MAILRECV_SECRET", SECRET)
    message_id = "welcome0000000000000000000000000000000"
    aws.put(PREFIX + message_id, stored("stored-pass.eml"))
    with answering(200, b"<html>Welcome</html>", "text/html") as url:
        monkeypatch.setenv("MAILRECV_URL", url)
        with pytest.raises(NeedsPerson, match=r"answered 200 with '<html>Welcome</html>'.*URL"):
            handler(lambda_event(message_id), None)
        assert aws.keys() == [PREFIX + message_id]
        swept = run_sweep_env(url, "--prefix", PREFIX, "--older-than", "0s")
    assert swept.returncode == 1
    assert "<html>Welcome</html>" in swept.stderr
    assert "Traceback" not in swept.stderr
    assert aws.keys() == [PREFIX + message_id]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"duplicate": False, "sha256": "BODY"}, "without a queue id"),
        ({"id": "", "duplicate": False, "sha256": "BODY"}, "without a queue id"),
        ({"id": "Zj6Vzff-xhh_720mukoYrQ", "duplicate": False}, "with sha256 'None'"),
        ({"id": "Zj6Vzff-xhh_720mukoYrQ", "sha256": "0" * 64}, "but the body sent has sha256"),
        (["Zj6Vzff-xhh_720mukoYrQ"], "which is not a receipt"),
    ],
    ids=["no-id", "empty-id", "no-sha256", "other-sha256", "not-an-object"],
)
def test_a_receipt_names_the_id_and_echoes_this_body(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, answer: Any, expected: str
) -> None:
    """Only a 200 naming a queue id and the SHA-256 of the body sent is a receipt."""
    body = stored("stored-pass.eml")
    text = json.dumps(answer).replace("BODY", hashlib.sha256(body).hexdigest())
    monkeypatch.setenv("MAILRECV_SECRET", SECRET)
    message_id = "noreceipt000000000000000000000000000000"
    aws.put(PREFIX + message_id, body)
    with answering(200, text.encode()) as url:
        monkeypatch.setenv("MAILRECV_URL", url)
        with pytest.raises(NeedsPerson, match=expected):
            handler(lambda_event(message_id), None)
    assert aws.keys() == [PREFIX + message_id]


@contextlib.contextmanager
def refusing_before_the_body(status: int, text: bytes) -> Iterator[str]:
    """A server that reads only the request head, answers, and closes without the body."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    head = b""
                    while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                        head += chunk
                    conn.sendall(
                        b"HTTP/1.1 %d Refused\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                        % (status, len(text), text)
                    )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/mailrecv"
    finally:
        listener.close()
        thread.join(timeout=5)


def test_413_before_the_body_is_read_as_413(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver that answers 413 and closes before the body is sent is read as that 413
    (a person must raise max_size), not as a network error."""
    monkeypatch.setenv("MAILRECV_SECRET", SECRET)
    message_id = "early413000000000000000000000000000000"
    body = stored("stored-pass.eml") + b"x" * (8 * 1024 * 1024)
    aws.put(PREFIX + message_id, body)
    answer = b'{"error": "message of 8389004 bytes exceeds the 4096-byte limit"}'
    with refusing_before_the_body(413, answer) as url:
        monkeypatch.setenv("MAILRECV_URL", url)
        with pytest.raises(NeedsPerson, match=r"answered 413: message of .* max_size"):
            handler(lambda_event(message_id), None)
    assert aws.keys() == [PREFIX + message_id]


def test_object_under_another_prefix_fails_loudly_and_stays(
    aws: Aws, to_receiver: Receiver
) -> None:
    """A Lambda-action event whose message SES stored under another prefix than
    MAILXFER_PREFIX is not a success with nothing transferred: it needs a person,
    names the key and the prefix to set, and the object stays; nothing is queued."""
    message_id = "elsewhere0000000000000000000000000000000"
    aws.put(
        "mail/" + message_id,
        b"From: Ann <ann@example.com>\r\nTo: volunteers@lists.example.org\r\n"
        b"Subject: Misfiled\r\nMessage-ID: <misfiled-1@example.com>\r\n\r\nHello\r\n",
    )
    with pytest.raises(NeedsPerson) as raised:
        handler(lambda_event(message_id), None)
    assert f"stored as s3://{BUCKET}/mail/{message_id}, not under MAILXFER_PREFIX" in str(
        raised.value
    )
    assert "set MAILXFER_PREFIX to the S3 action's object key prefix 'mail/'" in str(raised.value)
    assert aws.keys() == ["mail/" + message_id]
    assert to_receiver.project.spool.ids() == []
