"""The SES transport against moto running as a server, behind a recording front."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from routemail import config as configuration
from routemail.transports import (
    NULL_SENDER,
    PERMANENT,
    SENT,
    TEMPORARY,
    Transport,
    TransportError,
    open_transport,
)
from routemail.transports.parallel import Paced
from tests.conftest import BASE_CONFIG, Project, RunCli, free_port
from tests.ses_front import DOMAIN, Fault, Front, prepare_moto, running_front, sent_by_moto

SENDER = f"volunteers-bounces@{DOMAIN}"


def copy_for(recipient: str) -> bytes:
    return (
        f"From: Ann via volunteers <volunteers@{DOMAIN}>\r\nTo: {recipient}\r\n"
        f"Subject: [volunteers] Saturday\r\nMessage-ID: <m1@example.com>\r\n\r\nSee you.\r\n"
    ).encode()


@pytest.fixture
def front(moto_url: str) -> Iterator[Front]:
    """Fresh moto state with our domain verified and a configuration set, behind a Front."""
    prepare_moto(moto_url)
    with running_front(moto_url) as f:
        yield f


def open_ses(project: Project, endpoint: str, rate: str = "1000", retries: int = 3) -> Transport:
    project.write_config(
        BASE_CONFIG
        + f"""
[delivery]
transport = "ses"
rate = {rate}
retries = {retries}
backoff_seconds = 0.01
max_backoff_seconds = 0.05

[delivery.ses]
region = "us-east-1"
endpoint_url = "{endpoint}"
configuration_set = "lists-outbound"
timeout = 5
"""
    )
    return open_transport(configuration.load(project.config_path), project.spool)


def test_one_call_per_recipient_with_tags_and_configuration_set(
    project: Project, front: Front, moto_url: str
) -> None:
    """Each copy is one send_email with the raw bytes, one destination, the list's bounce
    address as sender, the configuration set and tags for list and message (made safe for
    SES); the Result carries the MessageId SES returned."""
    transport = open_ses(project, front.url)
    recipients = ["ann@example.com", "bob@example.net"]
    tags = {"list": "role-5+cardkey.x", "message": "Zm9vYmFy_-9"}
    try:
        results = [transport.send(SENDER, r, copy_for(r), tags) for r in recipients]
    finally:
        transport.close()
    assert [r.outcome for r in results] == [SENT, SENT]
    stored = sent_by_moto(moto_url)
    assert [m["id"] for m in stored] == [r.detail for r in results]
    assert [m["raw_data"].encode() for m in stored] == [copy_for(r) for r in recipients]
    assert [m["source"] for m in stored] == [SENDER, SENDER]
    assert [s["Destination"] for s in front.sends] == [{"ToAddresses": [r]} for r in recipients]
    request = front.sends[0]
    assert request["FromEmailAddress"] == SENDER
    assert request["ConfigurationSetName"] == "lists-outbound"
    assert request["EmailTags"] == [
        {"Name": "list", "Value": "role-5_2bcardkey_2ex"},
        {"Name": "message", "Value": "Zm9vYmFy_5f-9"},
    ]
    assert base64.b64decode(request["Content"]["Raw"]["Data"]) == copy_for(recipients[0])


def test_raw_content_goes_to_ses_in_wire_form(project: Project, front: Front) -> None:
    """A message with bare CRs and LFs and a NUL reaches SES with CRLF line breaks only
    and without the NUL (the SMTP smuggling pattern cannot ride along)."""
    transport = open_ses(project, front.url)
    raw = (
        b"From: Ann via volunteers <volunteers@lists.example.org>\nTo: ann@example.com\n"
        b"Subject: x\n\nline\r.\r\nMAIL FROM:<m@evil.example>\nNUL\x00 here\n"
    )
    try:
        result = transport.send(SENDER, "ann@example.com", raw, {"list": "volunteers"})
    finally:
        transport.close()
    assert result.outcome == SENT
    assert base64.b64decode(front.sends[0]["Content"]["Raw"]["Data"]) == (
        b"From: Ann via volunteers <volunteers@lists.example.org>\r\nTo: ann@example.com\r\n"
        b"Subject: x\r\n\r\nline\r\n.\r\nMAIL FROM:<m@evil.example>\r\nNUL here\r\n"
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (429, "TooManyRequestsException"),
        (400, "LimitExceededException"),
        (400, "ThrottlingException"),
        (400, "Throttling"),
    ],
)
def test_throttling_is_retried_within_the_run(
    project: Project, front: Front, moto_url: str, status: int, code: str
) -> None:
    """A throttled send is retried after a backoff and goes out once, without a failure."""
    front.faults = [Fault(status, code, "Maximum sending rate exceeded.")] * 2
    transport = open_ses(project, front.url, retries=3)
    try:
        result = transport.send(
            SENDER, "ann@example.com", copy_for("ann@example.com"), {"list": "v"}
        )
    finally:
        transport.close()
    assert result.outcome == SENT, result.detail
    assert len(front.sends) == 3
    assert len(sent_by_moto(moto_url)) == 1


def test_throttling_that_outlasts_the_retries_is_temporary(
    project: Project, front: Front, moto_url: str
) -> None:
    """Throttling that persists through every in-run retry leaves the copy TEMPORARY for a
    later run, and nothing reaches SES."""
    front.faults = [Fault(429, "TooManyRequestsException", "Maximum sending rate exceeded.")] * 3
    transport = open_ses(project, front.url, retries=2)
    try:
        result = transport.send(
            SENDER, "ann@example.com", copy_for("ann@example.com"), {"list": "v"}
        )
    finally:
        transport.close()
    assert result.outcome == TEMPORARY
    assert "TooManyRequestsException" in result.detail and "(3 tries this run)" in result.detail
    assert sent_by_moto(moto_url) == []


def test_rejected_recipient_is_permanent_and_others_still_go(
    project: Project, front: Front, moto_url: str
) -> None:
    """MessageRejected for a recipient is PERMANENT after one call; the next copy is sent."""
    front.refuse["nobody@example.com"] = Fault(
        400,
        "MessageRejected",
        "Email address is not verified. The following identities failed the check in "
        "region US-EAST-1: nobody@example.com",
    )
    transport = open_ses(project, front.url)
    try:
        refused = transport.send(
            SENDER, "nobody@example.com", copy_for("nobody@example.com"), {"list": "v"}
        )
        sent = transport.send(SENDER, "ann@example.com", copy_for("ann@example.com"), {"list": "v"})
    finally:
        transport.close()
    assert refused.outcome == PERMANENT and "MessageRejected" in refused.detail
    assert sent.outcome == SENT
    assert len(front.sends) == 2
    assert [m["destinations"][0] for m in sent_by_moto(moto_url)] == ["ann@example.com"]


def test_unverified_sender_keeps_the_mail(project: Project, front: Front, moto_url: str) -> None:
    """When SES refuses our own sender identity the copy is TEMPORARY, not given up, and the
    detail says to verify the domain; the rest of the run is not attempted."""
    transport = open_ses(project, front.url, retries=1)
    sender = "list-bounces@unverified.example"
    try:
        first = transport.send(
            sender, "ann@example.com", copy_for("ann@example.com"), {"list": "v"}
        )
        second = transport.send(
            sender, "bob@example.net", copy_for("bob@example.net"), {"list": "v"}
        )
    finally:
        transport.close()
    assert first.outcome == TEMPORARY and "verify the sending domain" in first.detail
    assert second.outcome == TEMPORARY and second.detail.startswith("not attempted:")
    assert len(front.sends) == 2
    assert sent_by_moto(moto_url) == []


def test_paused_account_is_temporary_and_stops_the_run(
    project: Project, front: Front, moto_url: str
) -> None:
    """A paused account keeps every copy TEMPORARY; after one round of retries the run stops
    calling SES for the following copies."""
    front.faults = [Fault(400, "SendingPausedException", "Sending is paused for this account.")] * 9
    transport = open_ses(project, front.url, retries=2)
    try:
        results = [
            transport.send(SENDER, f"m{i}@example.com", copy_for("m@example.com"), {"list": "v"})
            for i in range(4)
        ]
    finally:
        transport.close()
    assert [r.outcome for r in results] == [TEMPORARY] * 4
    assert "SendingPausedException" in results[0].detail
    assert len(front.sends) == 3
    assert sent_by_moto(moto_url) == []


def test_unreachable_endpoint_is_temporary(project: Project, front: Front) -> None:
    """With nothing listening at the endpoint the copy is TEMPORARY, never lost."""
    transport = open_ses(project, f"http://127.0.0.1:{free_port()}", retries=0)
    try:
        result = transport.send(
            SENDER, "ann@example.com", copy_for("ann@example.com"), {"list": "v"}
        )
    finally:
        transport.close()
    assert result.outcome == TEMPORARY
    assert "Could not connect" in result.detail


def test_rate_auto_reads_the_account_quota(project: Project, front: Front) -> None:
    """rate = "auto" asks SES (get_send_quota) for the account's maximum send rate and paces
    at it; moto's quota is 1 message a second."""
    transport = open_ses(project, front.url, rate='"auto"')
    try:
        assert isinstance(transport, Paced)
        assert transport.rate == 1.0
    finally:
        transport.close()
    assert any("Action=GetSendQuota" in body for body in front.other_requests)


def test_malformed_endpoint_is_a_clear_error(project: Project, front: Front) -> None:
    """An endpoint_url that is not a URL stops the run before any mail is touched, with a
    message naming the key to fix."""
    with pytest.raises(TransportError, match="check region and endpoint_url"):
        open_ses(project, "not a url")


def test_routemail_run_over_ses(
    project: Project, front: Front, moto_url: str, routemail_cli: RunCli
) -> None:
    """`routemail run` with transport ses sends every member one copy through SES, tagged
    with the list and the spool id, and records an S line for each."""
    project.write_config(
        BASE_CONFIG
        + f"""
[delivery]
transport = "ses"
rate = 1000

[delivery.ses]
endpoint_url = "{front.url}"
configuration_set = "lists-outbound"
"""
    )
    raw = (
        b"From: Ann <ann@example.com>\nTo: volunteers@lists.example.org\n"
        b"Subject: Saturday\nMessage-ID: <ses-run-1@example.com>\n\nWho can help?\n"
    )
    verdicts = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
    msg_id = project.spool.receive(raw, ["volunteers@lists.example.org"], verdicts).id
    run = routemail_cli("run")
    assert run.returncode == 0, run.stderr
    members = ["ann@example.com", "bob@example.net", "coordinator@example.org"]
    assert sorted(s["Destination"]["ToAddresses"][0] for s in front.sends) == members
    assert {tuple(map(str, (t["Value"] for t in s["EmailTags"]))) for s in front.sends} == {
        ("volunteers", msg_id)
    }
    assert len(sent_by_moto(moto_url)) == 3
    sent = [
        line.split()[2]
        for line in project.spool.read_sidecar(msg_id).splitlines()
        if line.startswith("S ")
    ]
    assert sorted(sent) == members
    assert not project.spool.is_pending(msg_id)


def test_a_notice_with_a_null_sender_goes_out_as_its_from_identity(
    project: Project, front: Front, moto_url: str
) -> None:
    """A notice has a null envelope sender: SES is given no FromEmailAddress and sends it as
    its From header's verified identity; an unverified one keeps the notice (TEMPORARY)."""
    transport = open_ses(project, front.url, retries=1)
    notice = (
        b"From: routemail <routemail@lists.example.org>\nTo: admin@example.org\n"
        b"Subject: Unknown destination\nAuto-Submitted: auto-generated\n\nSee attached.\n"
    )
    unverified = notice.replace(b"@lists.example.org>", b"@unverified.example>")
    try:
        sent = transport.send(NULL_SENDER, "admin@example.org", notice, {"list": "-"})
        kept = transport.send(NULL_SENDER, "admin@example.org", unverified, {"list": "-"})
    finally:
        transport.close()
    assert sent.outcome == SENT
    assert "FromEmailAddress" not in front.sends[0]
    sent_raw = [m["raw_data"].encode() for m in sent_by_moto(moto_url)]
    assert sent_raw == [notice.replace(b"\n", b"\r\n")]  # in wire form
    assert kept.outcome == TEMPORARY and "verify the sending domain" in kept.detail


def test_authors_addresses_go_to_ses_as_it_takes_them(
    project: Project, front: Front, moto_url: str
) -> None:
    """SES has no SMTPUTF8: a UTF-8 local part is a permanent failure that says so, and
    no call is made; a UTF-8 domain goes as its A-label; a quoted local part as it is."""
    transport = open_ses(project, front.url)
    try:
        utf8 = transport.send(SENDER, "j\u00f6rg@ex\u00e4mple.de", copy_for("x@y.org"), {})
        domain = transport.send(SENDER, "ann@ex\u00e4mple.de", copy_for("x@y.org"), {})
        quoted = transport.send(SENDER, '"a b"@example.org', copy_for("x@y.org"), {})
    finally:
        transport.close()
    assert utf8.outcome == PERMANENT
    assert "j\u00f6rg@ex\u00e4mple.de" in utf8.detail and "SMTPUTF8" in utf8.detail
    assert (domain.outcome, quoted.outcome) == (SENT, SENT)
    assert [s["Destination"] for s in front.sends] == [
        {"ToAddresses": ["ann@xn--exmple-cua.de"]},
        {"ToAddresses": ['"a b"@example.org']},
    ]
