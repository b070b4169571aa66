"""SNS notifications under gunicorn: old ones refused, each applied once, certificates
fetched once per URL, however many hostile posts arrive."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests import snskeys
from tests.conftest import Project, Receiver, RunCli, running_receiver
from tests.test_feedback import members_in_file, post_sns, ses_event, suppressed

WORKERS = 2  # each gunicorn worker keeps its own certificate cache


def sns_time(hours_ago: float) -> str:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def start_sns_receiver(
    project: Project, tmp_path: Path, bounces: str = "", certificate: bytes | None = None
) -> Any:
    cert = tmp_path / "sns-cert.pem"
    cert.write_bytes(certificate or snskeys.certificate())
    project.write_config(
        project.config_path.read_text()
        + f'\n[bounces]\nsns_topics = ["{snskeys.TOPIC}"]\n{bounces}'
    )
    return running_receiver(
        project,
        workers=WORKERS,
        app="tests.sns_app:app",
        extra_env={
            "SNS_TEST_CERT": str(cert),
            "SNS_TEST_LOG": str(tmp_path / "sns-get.log"),
            "SNS_TEST_CERT_LOG": str(tmp_path / "cert-get.log"),
        },
    )


@pytest.fixture
def sns(project: Project, tmp_path: Path) -> Iterator[Receiver]:
    """The receiver under gunicorn with the test SNS certificate and a log of its fetches."""
    with start_sns_receiver(project, tmp_path) as receiver:
        yield receiver


def cert_fetches(tmp_path: Path) -> list[str]:
    log = tmp_path / "cert-get.log"
    return log.read_text().splitlines() if log.exists() else []


def logged_events(project: Project, address: str) -> list[str]:
    with sqlite3.connect(project.data_dir / "state.sqlite3") as db:
        rows = db.execute(
            "SELECT event FROM deliverability_log WHERE address = ? ORDER BY id", (address,)
        ).fetchall()
    db.close()
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    "sent", ["2019-06-01T12:00:00.000Z", sns_time(2)], ids=["from-2019", "two-hours-ago"]
)
def test_old_notification_is_refused(sns: Receiver, sent: str) -> None:
    """A genuinely signed bounce from 2019, or from two hours ago, is a replay: 403,
    nobody suppressed."""
    body = snskeys.signed(
        ses_event("Bounce", "bob@example.net", "volunteers"), extra={"Timestamp": sent}
    )
    status, answer = post_sns(sns, body)
    assert status == 403, answer
    assert "refused as a replay" in answer["error"]
    assert suppressed(sns.project) == []


def test_max_age_is_configurable(project: Project, tmp_path: Path) -> None:
    """[bounces] sns_max_age_hours = 3 accepts a notification two hours old; a future
    Timestamp is refused all the same."""
    with start_sns_receiver(project, tmp_path, "sns_max_age_hours = 3\n") as receiver:
        event = ses_event("Bounce", "bob@example.net", "volunteers")
        future = snskeys.signed(event, extra={"Timestamp": sns_time(-1)})
        assert post_sns(receiver, future)[0] == 403
        status, answer = post_sns(receiver, snskeys.signed(event, extra={"Timestamp": sns_time(2)}))
        assert status == 200, answer
    assert suppressed(project) == [("bob@example.net", "", "bounce")]


def test_replayed_bounce_does_not_resuppress_after_removal(
    sns: Receiver, routemail_cli: RunCli
) -> None:
    """After `suppression remove`, the same signed bounce posted again changes nothing."""
    body = snskeys.signed(ses_event("Bounce", "bob@example.net", "volunteers"))
    status, answer = post_sns(sns, body)
    assert status == 200 and answer["actions"] == ["bob@example.net: suppressed for all lists"]
    removed = routemail_cli("suppression", "remove", "bob@example.net")
    assert removed.returncode == 0, removed.stderr
    status, answer = post_sns(sns, body)
    assert (status, answer) == (200, {"actions": [], "duplicate": True})
    assert suppressed(sns.project) == []


def test_concurrent_copies_of_a_complaint_count_once(sns: Receiver) -> None:
    """Eight deliveries of one complaint at once, through both workers: applied once."""
    body = snskeys.signed(ses_event("Complaint", "ann@example.com", "board"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post_sns(sns, body), range(8)))
    assert [status for status, _ in answers] == [200] * 8
    assert sum(not answer.get("duplicate") for _, answer in answers) == 1
    assert logged_events(sns.project, "ann@example.com") == ["complaint", "unsubscribe"]
    assert "ann@example.com" not in members_in_file(sns.project, "board")


def test_unsigned_posts_fetch_no_certificate(sns: Receiver, tmp_path: Path) -> None:
    """100 posts without a signature are refused before any certificate is fetched."""
    event = ses_event("Bounce", "bob@example.net", "volunteers")
    for _ in range(100):
        body = snskeys.signed(event)
        del body["Signature"]
        assert post_sns(sns, body)[0] == 403
    assert cert_fetches(tmp_path) == []


def test_certificate_is_fetched_once_per_url(sns: Receiver, tmp_path: Path) -> None:
    """100 badly signed posts fetch the real certificate at most once per worker, and
    100 naming a certificate that cannot be fetched try it at most once per worker."""
    missing = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-gone.pem"
    event = ses_event("Bounce", "bob@example.net", "volunteers")
    for url in (snskeys.CERT_URL, missing):
        for n in range(100):
            body = snskeys.signed(event, cert_url=url)
            body["Signature"] = snskeys.signed({"n": n})["Signature"]  # genuine, for another text
            status, answer = post_sns(sns, body)
            assert status == 403, answer
    fetched = cert_fetches(tmp_path)
    assert 1 <= fetched.count(snskeys.CERT_URL) <= WORKERS
    assert 1 <= fetched.count(missing) <= WORKERS
    assert suppressed(sns.project) == []


def test_deeply_nested_json_is_a_400(sns: Receiver) -> None:
    """JSON nested 100,000 deep answers 400, not 503 with a traceback."""
    import urllib.error
    import urllib.request

    for payload in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 30_000 + b"1" + b"}" * 30_000):
        request = urllib.request.Request(sns.url + "/ses-events", data=payload, method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        with caught.value as error:
            assert error.code == 400
    nested = snskeys.signed("[" * 100_000 + "]" * 100_000)
    status, answer = post_sns(sns, nested)
    assert (status, answer["error"]) == (400, "the SNS Message is not an SES event")
    assert "Traceback" not in sns.log_path.read_text()


@pytest.mark.parametrize(
    ("days", "refusal"),
    [((-40, -10), "expired at"), ((10, 40), "is not valid before")],
    ids=["expired", "not-yet-valid"],
)
def test_certificate_outside_its_validity_is_refused(
    project: Project, tmp_path: Path, days: tuple[int, int], refusal: str
) -> None:
    """A fresh bounce signed by the test key, whose certificate expired ten days ago (or
    becomes valid in ten days), is refused with 403 and suppresses nobody."""
    now = dt.datetime.now(dt.UTC)
    cert = snskeys.certificate_valid(
        now + dt.timedelta(days=days[0]), now + dt.timedelta(days=days[1])
    )
    with start_sns_receiver(project, tmp_path, certificate=cert) as receiver:
        body = snskeys.signed(ses_event("Bounce", "bob@example.net", "volunteers"))
        status, answer = post_sns(receiver, body)
    assert status == 403, answer
    assert f"certificate {snskeys.CERT_URL} {refusal}" in answer["error"]
    assert suppressed(project) == []
