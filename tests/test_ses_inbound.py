"""POST /ses-inbound under gunicorn: SES receipt notifications over SNS, inline or naming an
object in moto's S3, queued as /mailrecv queues them and delivered by `routemail run`."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from mailrecv.inbound import INLINE_LIMIT
from routemail.config import parse
from routemail.errors import ConfigError
from tests import snskeys
from tests.conftest import BASE_CONFIG, Project, Receiver, free_port, running_receiver
from tests.mailbox import recipients
from tests.s3_proxy import s3_proxy
from tests.test_health import sample, scrape

TOPIC = "arn:aws:sns:us-east-1:123456789012:routemail-inbound"
BUCKET = "routemail-inbound"
PREFIX = "inbound/"
VOLUNTEERS = "volunteers@lists.example.org"
EACH_MEMBER_ONCE = {"ann@example.com": 1, "bob@example.net": 1, "coordinator@example.org": 1}
ALL_PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")


def inbound_config(s3_url: str, extra: str = "", **overrides: str | None) -> str:
    """The base lists.toml with [receiver.ses_inbound] for moto; an override of None
    leaves that key out, and extra is appended."""
    values: dict[str, str | None] = {
        "sns_topics": f'["{TOPIC}"]',
        "bucket": f'"{BUCKET}"',
        "prefix": f'"{PREFIX}"',
        "region": '"us-east-1"',
        "endpoint_url": f'"{s3_url}"',
        "timeout": "2",
        **overrides,
    }
    table = "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)
    return BASE_CONFIG + "\n[receiver.ses_inbound]\n" + table + extra


@dataclass
class Inbound:
    """The receiver, its project, and where its test certificates are served from."""

    receiver: Receiver
    project: Project
    s3_url: str

    def post(self, body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.receiver.url + "/ses-inbound",
            data=data,
            headers={"Content-Type": "text/plain; charset=UTF-8"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    @contextlib.contextmanager
    def configured(self, extra: str = "", **overrides: str | None) -> Iterator[None]:
        """lists.toml changed for the block (the receiver reads it per post)."""
        self.project.write_config(inbound_config(self.s3_url, extra, **overrides))
        try:
            yield
        finally:
            self.project.write_config(inbound_config(self.s3_url))

    def queued(self) -> list[str]:
        return self.project.spool.ids()

    def run(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "routemail", "run"],
            env=self.project.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr


def receiver_options(project: Project) -> dict[str, Any]:
    """For starting the receiver with the test SNS certificate and moto's credentials."""
    cert = project.root / "sns-cert.pem"
    cert.write_bytes(snskeys.certificate())
    env: dict[str, str | None] = {
        "SNS_TEST_CERT": str(cert),
        "SNS_TEST_LOG": str(project.root / "sns-get.log"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_ENDPOINT_URL": None,
    }
    return {"app": "tests.sns_app:app", "extra_env": env}


@pytest.fixture(scope="module")
def inbound(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[Inbound]:
    """One receiver for the module, with the test SNS certificate and moto's S3."""
    project = Project(tmp_path_factory.mktemp("ses-inbound"))
    project.write_config(inbound_config(moto_server))
    options = receiver_options(project)
    with running_receiver(project, workers=2, **options) as receiver:  # metrics sum workers
        yield Inbound(receiver, project, moto_server)


@pytest.fixture
def s3(inbound: Inbound, moto_url: str) -> Any:
    """moto's S3, emptied, with the inbound bucket."""
    return inbound_bucket(moto_url)


def inbound_bucket(moto_url: str) -> Any:
    """A client of moto's S3, where the inbound bucket has been made."""
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def keys(s3: Any, bucket: str = BUCKET) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def post_text(subject: str, sender: str = "ann@example.com", padding: int = 0) -> bytes:
    """A post to the volunteers list with a Message-ID of its own."""
    return (
        f"From: Ann Author <{sender}>\r\nTo: {VOLUNTEERS}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\n"
        "Date: Wed, 02 Dec 2026 21:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n\r\n'
        f"Hello, volunteers.\r\n{'x' * padding}\r\n"
    ).encode()


def receipt(action: dict[str, Any], to: list[str], verdicts: dict[str, str]) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-02T21:00:00.000Z",
        "processingTimeMillis": 300,
        "recipients": to,
        **{f"{name}Verdict": {"status": value} for name, value in verdicts.items()},
        "action": action,
    }


def ses_notification(
    *,
    content: str | None = None,
    encoding: str = "BASE64",
    key: str | None = None,
    bucket: str = BUCKET,
    to: list[str] | None = None,
    verdicts: dict[str, str] = ALL_PASS,
) -> dict[str, Any]:
    """What an SES receipt rule publishes: inline (content) or naming an object (key)."""
    message_id = uuid.uuid4().hex
    to = [VOLUNTEERS] if to is None else to
    if key is not None:
        action = {
            "type": "S3",
            "topicArn": TOPIC,
            "bucketName": bucket,
            "objectKeyPrefix": PREFIX,
            "objectKey": key,
        }
    else:
        action = {"type": "SNS", "topicArn": TOPIC, "encoding": encoding}
    notification = {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-12-02T21:00:00.000Z",
            "source": "ann@example.com",
            "messageId": message_id,
            "destination": to,
        },
        "receipt": receipt(action, to, verdicts),
    }
    if content is not None:
        notification["content"] = content
    return notification


def inline(raw: bytes, encoding: str = "BASE64", **options: Any) -> dict[str, Any]:
    content = base64.b64encode(raw).decode() if encoding == "BASE64" else raw.decode()
    return ses_notification(content=content, encoding=encoding, **options)


def signed(notification: dict[str, Any], **options: Any) -> dict[str, str]:
    return snskeys.signed(notification, topic=options.pop("topic", TOPIC), **options)


def stored(s3: Any, raw: bytes, **options: Any) -> tuple[str, dict[str, Any]]:
    """The message put where the S3 action puts it, and the notification naming it."""
    key = PREFIX + uuid.uuid4().hex
    s3.put_object(Bucket=BUCKET, Key=key, Body=raw)
    return key, ses_notification(key=key, **options)


# -- hostile and malformed posts first ---------------------------------------------


def test_tampered_notification_is_refused(inbound: Inbound, s3: Any) -> None:
    """A notification changed after signing (another recipient) is 403; nothing queued."""
    before = inbound.queued()
    body = signed(inline(post_text("tampered")))
    body["Message"] = body["Message"].replace(VOLUNTEERS, "board@lists.example.org")
    status, answer = inbound.post(body)
    assert status == 403, answer
    assert "bad signature" in answer["error"]
    assert inbound.queued() == before


def test_notification_from_another_topic_is_refused(inbound: Inbound, s3: Any) -> None:
    """A genuinely signed notification from a topic not in sns_topics is 403, and its
    object is never read or deleted."""
    key, notification = stored(s3, post_text("other topic"))
    body = signed(notification, topic="arn:aws:sns:us-east-1:999999999999:someone-else")
    status, answer = inbound.post(body)
    assert status == 403, answer
    assert "[receiver.ses_inbound] sns_topics" in answer["error"]
    assert keys(s3) == [key]


def test_bounce_topic_is_not_an_inbound_topic(inbound: Inbound, s3: Any) -> None:
    """The events topic allowed for /ses-events does not make /ses-inbound take mail."""
    body = signed(inline(post_text("events topic")), topic=snskeys.TOPIC)
    with inbound.configured(extra=f'\n[bounces]\nsns_topics = ["{snskeys.TOPIC}"]\n'):
        status, answer = inbound.post(body)
    assert status == 403, answer


def test_expired_certificate_is_refused(inbound: Inbound, s3: Any) -> None:
    """A notification signed with the test key under a certificate that expired ten days
    ago is 403, however genuine its signature."""
    now = dt.datetime.now(dt.UTC)
    expired = snskeys.certificate_valid(now - dt.timedelta(days=40), now - dt.timedelta(days=10))
    (inbound.project.root / "expired.pem").write_bytes(expired)
    url = snskeys.CERT_URL.rpartition("/")[0] + "/expired.pem"
    status, answer = inbound.post(signed(inline(post_text("expired")), cert_url=url))
    assert status == 403, answer
    assert "expired at" in answer["error"]


def test_replayed_notification_is_refused(inbound: Inbound, s3: Any) -> None:
    """A genuine notification signed two hours ago is a replay: 403, its object stays."""
    key, notification = stored(s3, post_text("replayed"))
    sent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    status, answer = inbound.post(signed(notification, extra={"Timestamp": sent}))
    assert status == 403, answer
    assert "refused as a replay" in answer["error"]
    assert "[receiver.ses_inbound] sns_max_age_hours" in answer["error"]
    assert keys(s3) == [key]


def test_foreign_certificate_host_is_refused(inbound: Inbound, s3: Any) -> None:
    """A certificate URL off the SNS hosts is refused before anything is fetched."""
    url = "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"
    status, answer = inbound.post(signed(inline(post_text("evil cert")), cert_url=url))
    assert status == 403, answer
    assert "not on an SNS host" in answer["error"]


@pytest.mark.parametrize(
    ("bucket", "key"),
    [("someone-elses-bucket", PREFIX + "abc"), (BUCKET, "elsewhere/abc"), (BUCKET, "abc")],
    ids=["other-bucket", "other-prefix", "no-prefix"],
)
def test_object_outside_bucket_and_prefix_is_never_read(
    inbound: Inbound, s3: Any, bucket: str, key: str
) -> None:
    """A notification naming an object outside the configured bucket and prefix is 403;
    the object is neither read nor deleted."""
    if bucket != BUCKET:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=post_text("outside"))
    before = inbound.queued()
    with (
        s3_proxy(inbound.s3_url) as proxy,
        inbound.configured(endpoint_url=f'"{proxy.url}"'),
    ):
        status, answer = inbound.post(signed(ses_notification(key=key, bucket=bucket)))
    assert status == 403, answer
    assert f"s3://{bucket}/{key} is outside" in answer["error"]
    assert proxy.seen == []
    assert key in keys(s3, bucket)
    assert inbound.queued() == before


def test_object_without_a_configured_bucket_is_refused(inbound: Inbound, s3: Any) -> None:
    """With no bucket configured only inline messages are taken; the object stays."""
    key, notification = stored(s3, post_text("no bucket"))
    with inbound.configured(bucket=None, prefix=None):
        status, answer = inbound.post(signed(notification))
    assert status == 403, answer
    assert keys(s3) == [key]


def test_inline_message_over_the_limit_is_413(inbound: Inbound, s3: Any) -> None:
    """An inline message larger than SES ever publishes with an SNS action is 413."""
    raw = post_text("too big", padding=INLINE_LIMIT)
    status, answer = inbound.post(signed(inline(raw)))
    assert status == 413, answer
    assert f"at most {INLINE_LIMIT} bytes" in answer["error"]


@pytest.mark.parametrize(
    ("content", "encoding", "expected"),
    [
        ("RnJvbTog*not base64*", "BASE64", "not BASE64"),
        ("RnJvbTogYQ", "BASE64", "not BASE64"),  # incorrect padding
        ("From: a\r\n\r\nx", "QUOTED-PRINTABLE", "unknown content encoding"),
        ("From: a\r\n\r\n\ud800", "UTF8", "not UTF8"),  # a lone surrogate
    ],
    ids=["bad-characters", "bad-padding", "unknown-encoding", "not-utf8"],
)
def test_content_not_as_its_encoding_says_is_400(
    inbound: Inbound, s3: Any, content: str, encoding: str, expected: str
) -> None:
    before = inbound.queued()
    status, answer = inbound.post(signed(ses_notification(content=content, encoding=encoding)))
    assert status == 400, answer
    assert expected in answer["error"]
    assert inbound.queued() == before


def without(notification: dict[str, Any], *path: str) -> dict[str, Any]:
    """The notification with the field at path removed."""
    target = notification
    for name in path[:-1]:
        target = target[name]
    del target[path[-1]]
    return notification


@pytest.mark.parametrize(
    ("notification", "expected"),
    [
        ({**inline(b"x"), "notificationType": "Bounce"}, "of type 'Bounce', not 'Received'"),
        (without(inline(b"x"), "notificationType"), "of type 'None', not 'Received'"),
        (without(inline(b"x"), "receipt"), "has no receipt.action"),
        (without(inline(b"x"), "receipt", "action"), "has no receipt.action"),
        (without(inline(b"x"), "content"), "neither an S3 action nor an SNS action"),
        (without(ses_notification(key="inbound/k"), "receipt", "action", "objectKey"), "lacks"),
        (without(inline(post_text("r")), "receipt", "recipients"), "no receipt.recipients"),
        (inline(post_text("r"), to=["not an address"]), "is not an address"),
        (inline(post_text("v"), verdicts={**ALL_PASS, "spam": "MAYBE"}), "is not a verdict"),
    ],
    ids=[
        "bounce",
        "no-type",
        "no-receipt",
        "no-action",
        "no-content",
        "no-object-key",
        "no-recipients",
        "bad-recipient",
        "bad-verdict",
    ],
)
def test_malformed_notification_is_400(
    inbound: Inbound, s3: Any, notification: dict[str, Any], expected: str
) -> None:
    before = inbound.queued()
    status, answer = inbound.post(signed(notification))
    assert status == 400, answer
    assert expected in answer["error"]
    assert inbound.queued() == before


def test_malformed_receipt_naming_an_object_leaves_it_alone(inbound: Inbound, s3: Any) -> None:
    """A receipt that names an object but not a usable recipient is refused before the
    object is read, and it stays."""
    key, notification = stored(s3, post_text("bad recipient"), to=["not an address"])
    with (
        s3_proxy(inbound.s3_url) as proxy,
        inbound.configured(endpoint_url=f'"{proxy.url}"'),
    ):
        status, answer = inbound.post(signed(notification))
    assert status == 400, answer
    assert proxy.seen == []
    assert keys(s3) == [key]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (b"[" * 100_000, 400),
        (json.dumps({"Type": "Notification", "Message": "{}"}).encode(), 403),
        (b'{"Message": "' + b"x" * (1 << 20) + b'"}', 413),
    ],
    ids=["not-json", "not-an-object", "nested-deep", "unsigned", "over-1-mib"],
)
def test_not_an_sns_message_is_refused(
    inbound: Inbound, s3: Any, body: bytes, expected: int
) -> None:
    """Not JSON, not an object, nested past any limit, unsigned or too large: refused
    with 4xx, never a 5xx (which SNS would retry) or a traceback."""
    status, answer = inbound.post(body)
    assert status == expected, answer


def test_message_that_is_not_json_is_400(inbound: Inbound, s3: Any) -> None:
    status, answer = inbound.post(signed("not an SES notification"))
    assert status == 400, answer
    assert "not a JSON object" in answer["error"] or "Expecting value" in answer["error"]


def test_invalid_settings_answer_503(inbound: Inbound, s3: Any) -> None:
    """A mistake in [receiver.ses_inbound] answers 503 (SNS retries while it is fixed)
    and the log names the key."""
    with inbound.configured(bucket='"Not_A_Bucket"'):
        status, answer = inbound.post(signed(inline(post_text("misconfigured"))))
    assert status == 503, answer
    assert answer["error"] == "configuration error; retry later"
    log = inbound.receiver.log_path.read_text()
    assert "receiver.ses_inbound.bucket: expected an S3 bucket name" in log


# -- mail in ---------------------------------------------------------------------------


def copies(inbound: Inbound, subject: str) -> dict[str, int]:
    return dict(recipients(inbound.project.data_dir, subject))


@pytest.mark.parametrize("form", ["BASE64", "UTF8", "S3"])
def test_message_is_queued_and_delivered(inbound: Inbound, s3: Any, form: str) -> None:
    """An SNS action's message (either encoding) or an S3 action's object is queued with
    the receipt's recipients and verdicts, byte for byte, the object deleted once queued,
    and `routemail run` delivers it to the list's members."""
    subject = f"{form} {uuid.uuid4().hex[:8]}"
    raw = post_text(subject)
    notification = stored(s3, raw)[1] if form == "S3" else inline(raw, form)
    status, answer = inbound.post(signed(notification))
    assert status == 200, answer
    assert answer == {
        "id": answer["id"],
        "duplicate": False,
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    assert keys(s3) == []
    history = inbound.project.spool.history(answer["id"])
    assert history.destinations == [VOLUNTEERS]
    assert history.verdicts == ALL_PASS
    assert inbound.project.spool.message_path(answer["id"]).read_bytes() == raw
    inbound.run()
    assert copies(inbound, subject) == EACH_MEMBER_ONCE


def test_missing_verdicts_never_pass(inbound: Inbound, s3: Any) -> None:
    """The receipt's verdicts are recorded as they are, and one it does not carry as
    DISABLED, never PASS."""
    partial = {"spf": "PASS", "dkim": "FAIL"}
    status, answer = inbound.post(signed(inline(post_text("partial"), verdicts=partial)))
    assert status == 200, answer
    verdicts = inbound.project.spool.history(answer["id"]).verdicts
    assert verdicts == {**dict.fromkeys(ALL_PASS, "DISABLED"), **partial}


def test_duplicate_sns_delivery_is_one_message(inbound: Inbound, s3: Any) -> None:
    """SNS delivering one notification twice (inline or stored) queues one message and
    sends one copy per member."""
    subject = f"twice {uuid.uuid4().hex[:8]}"
    body = signed(inline(post_text(subject)))
    first = inbound.post(body)
    second = inbound.post(body)
    assert first[0] == second[0] == 200, (first, second)
    assert second[1] == {**first[1], "duplicate": True}
    stored_subject = f"stored twice {uuid.uuid4().hex[:8]}"
    _key, notification = stored(s3, post_text(stored_subject))
    body = signed(notification)
    status, answer = inbound.post(body)
    assert status == 200, answer
    status, again = inbound.post(body)
    assert (status, again) == (200, {"gone": True})
    inbound.run()
    assert copies(inbound, subject) == EACH_MEMBER_ONCE
    assert copies(inbound, stored_subject) == EACH_MEMBER_ONCE


def test_unreachable_s3_is_503_and_the_object_stays(inbound: Inbound, s3: Any) -> None:
    """With S3 unreachable the answer is 503, so SNS retries; the object stays, and the
    retry once S3 is back queues and deletes it."""
    key, notification = stored(s3, post_text("unreachable"))
    body = signed(notification)
    before = inbound.queued()
    with inbound.configured(endpoint_url=f'"http://127.0.0.1:{free_port()}"'):
        status, answer = inbound.post(body)
    assert status == 503, answer
    assert "retry later" in answer["error"]
    assert keys(s3) == [key]
    assert inbound.queued() == before
    status, answer = inbound.post(body)
    assert status == 200, answer
    assert keys(s3) == []
    assert answer["id"] in inbound.queued()


def test_object_not_deleted_is_503_and_the_retry_deletes(inbound: Inbound, s3: Any) -> None:
    """Queued but not deleted: 503 naming the queue id, so SNS retries; the object stays
    until the retry, which is a duplicate of the queued message and deletes it."""
    key, notification = stored(s3, post_text("not deleted"))
    body = signed(notification)
    with (
        s3_proxy(inbound.s3_url, refuse_deletes=True) as proxy,
        inbound.configured(endpoint_url=f'"{proxy.url}"'),
    ):
        status, answer = inbound.post(body)
    assert status == 503, answer
    assert "not deleted; retry later" in answer["error"]
    assert answer["id"] in inbound.queued()
    assert keys(s3) == [key]
    status, again = inbound.post(body)
    assert status == 200, again
    assert (again["id"], again["duplicate"]) == (answer["id"], True)
    assert keys(s3) == []


def test_message_over_max_size_is_413_and_the_object_stays(tmp_path: Path, moto_url: str) -> None:
    """A stored or inline message over [receiver] max_size is refused with 413 (SNS does
    not retry what cannot fit), nothing is queued, and a stored one stays in S3."""
    s3 = inbound_bucket(moto_url)
    project = Project(tmp_path / "small")
    project.root.mkdir(exist_ok=True)
    small = inbound_config(moto_url).replace("[receiver]\n", "[receiver]\nmax_size = 4000\n")
    project.write_config(small)
    key, notification = stored(s3, post_text("big stored", padding=5000))
    with running_receiver(project, **receiver_options(project)) as receiver:
        site = Inbound(receiver, project, moto_url)
        status, answer = site.post(signed(notification))
        assert status == 413, answer
        assert "exceeds [receiver] max_size (4000 bytes)" in answer["error"]
        status, answer = site.post(signed(inline(post_text("big inline", padding=5000))))
        assert status == 413, answer
    assert keys(s3) == [key]
    assert project.spool.ids() == []


def test_stored_message_refused_by_the_spool_stays(inbound: Inbound, s3: Any) -> None:
    """An object the spool will not queue (not a message) is refused and stays in S3."""
    key, notification = stored(s3, b"no header block here, only words\r\n")
    status, answer = inbound.post(signed(notification))
    assert status == 400, answer
    assert keys(s3) == [key]


def test_settings_mistakes_are_named(tmp_path: Path) -> None:
    """Every mistake in [receiver.ses_inbound] is reported with its key and the fix."""
    text = inbound_config(
        "ftp://s3.example.org",
        extra="bucket_name = 'x'\n",
        sns_topics='["arn:aws:sqs:us-east-1:123456789012:queue", 7]',
        bucket='"Not_A_Bucket"',
        prefix='"/inbound/"',
        timeout="0",
    )
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path / "lists.toml")
    problems = "\n".join(caught.value.problems)
    for expected in (
        "receiver.ses_inbound.bucket_name: unknown key",
        "receiver.ses_inbound.sns_topics: 'arn:aws:sqs:us-east-1:123456789012:queue' is not an"
        " SNS topic ARN",
        "receiver.ses_inbound.sns_topics: 7 is not an SNS topic ARN",
        "receiver.ses_inbound.bucket: expected an S3 bucket name",
        "receiver.ses_inbound.prefix: the S3 action's object key prefix never starts with /",
        "receiver.ses_inbound.endpoint_url: expected an http(s) URL",
        "receiver.ses_inbound.timeout: expected a positive number",
    ):
        assert expected in problems
    no_bucket = inbound_config("http://s3", bucket=None)
    with pytest.raises(ConfigError, match=r"prefix: needs bucket"):
        parse(no_bucket, tmp_path / "lists.toml")
    config = parse(inbound_config("http://s3"), tmp_path / "lists.toml")
    assert config.receiver.ses_inbound.sns_topics == {TOPIC}
    assert (config.receiver.ses_inbound.bucket, config.receiver.ses_inbound.prefix) == (
        BUCKET,
        PREFIX,
    )


def test_posts_are_counted_for_metrics(inbound: Inbound, s3: Any) -> None:
    """/metrics counts /ses-inbound's answers by status, over the receiver's workers."""

    def counts() -> tuple[float, float]:
        status, text = scrape(inbound.receiver)
        assert status == 200, text
        found = [sample(text, "mailrecv_ses_inbound_posts_total", status=s) for s in ("200", "403")]
        return (found[0] or 0.0, found[1] or 0.0)

    before = counts()
    assert inbound.post(signed(inline(post_text("counted"))))[0] == 200
    assert inbound.post(signed(inline(post_text("not counted")), topic=snskeys.TOPIC))[0] == 403
    assert counts() == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize(
    ("kind", "answer", "fetched"),
    [
        ("SubscriptionConfirmation", {"confirmed": True}, True),
        ("UnsubscribeConfirmation", {"ok": True}, False),
    ],
)
def test_subscription_messages(
    inbound: Inbound, s3: Any, kind: str, answer: dict[str, bool], fetched: bool
) -> None:
    """A verified SubscriptionConfirmation for an inbound topic is confirmed by fetching
    its SubscribeURL; an UnsubscribeConfirmation is only acknowledged. Neither queues."""
    url = f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token={uuid.uuid4()}"
    body = snskeys.signed(
        "You have chosen to subscribe",
        kind=kind,
        topic=TOPIC,
        extra={"SubscribeURL": url, "Token": "t"},
    )
    before = inbound.queued()
    assert inbound.post(body) == (200, answer)
    log = inbound.project.root / "sns-get.log"
    assert (url in (log.read_text().splitlines() if log.exists() else [])) is fetched
    assert inbound.queued() == before
