"""The SMTP transport against a real aiosmtpd server on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from routemail import config as configuration
from routemail.transports import PERMANENT, SENT, TEMPORARY, Transport, open_transport
from tests.conftest import BASE_CONFIG, Project, RunCli, free_port
from tests.smtp_relay import Recorder

SENDER = "volunteers-bounces@lists.example.org"
USERNAME = "relay-user"
PASSWORD = "correct horse battery staple"
TAGS = {"list": "volunteers", "message": "abc"}


def copy_for(recipient: str) -> bytes:
    return (
        f"From: Ann via volunteers <volunteers@lists.example.org>\n"
        f"To: {recipient}\nSubject: [volunteers] Saturday\n"
        f"Message-ID: <m1@example.com>\n\nSee you there.\n.leading dot\n"
    ).encode()


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data == (USERNAME.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=data)


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1, signed by it."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "routemail test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    certs.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certs


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Recorder]]:
    """A plain aiosmtpd server with the refusing Recorder handler."""
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def open_smtp(project: Project, port: int, extra: str = "", retries: int = 3) -> Transport:
    project.write_config(
        BASE_CONFIG
        + f"""
[delivery]
transport = "smtp"
rate = 1000
retries = {retries}
backoff_seconds = 0.01
max_backoff_seconds = 0.05

[delivery.smtp]
host = "127.0.0.1"
port = {port}
timeout = 5
{extra}
"""
    )
    return open_transport(configuration.load(project.config_path), project.spool)


def test_each_recipient_gets_its_own_transaction_on_one_connection(
    project: Project, smtp_server: tuple[Controller, Recorder]
) -> None:
    """Copies go out one transaction each, with the router's envelope sender, CRLF line
    endings and dot-stuffing undone by the server, all over a single connection."""
    controller, handler = smtp_server
    transport = open_smtp(project, controller.port, 'tls = "none"')
    recipients = ["ann@example.com", "bob@example.net", "cy@example.org"]
    try:
        results = [transport.send(SENDER, r, copy_for(r), TAGS) for r in recipients]
    finally:
        transport.close()
    assert [r.outcome for r in results] == [SENT] * 3
    assert [(m.sender, m.recipients) for m in handler.messages] == [
        (SENDER, [r]) for r in recipients
    ]
    assert handler.messages[0].content == copy_for(recipients[0]).replace(b"\n", b"\r\n")
    assert len({m.peer for m in handler.messages}) == 1


def test_temporary_and_permanent_refusals_per_recipient(
    project: Project, smtp_server: tuple[Controller, Recorder]
) -> None:
    """A 4xx is retried within the run and then reported TEMPORARY, a 5xx is PERMANENT at
    once, 454 throttling is retried until it passes, and none of it disturbs the others."""
    controller, handler = smtp_server
    transport = open_smtp(project, controller.port, 'tls = "none"', retries=3)
    recipients = ["ann@example.com", "busy@example.com", "nobody@example.com"]
    recipients += ["slow@example.com", "bob@example.net"]
    try:
        results = {r: transport.send(SENDER, r, copy_for(r), TAGS) for r in recipients}
    finally:
        transport.close()
    assert {r: res.outcome for r, res in results.items()} == {
        "ann@example.com": SENT,
        "busy@example.com": TEMPORARY,
        "nobody@example.com": PERMANENT,
        "slow@example.com": SENT,
        "bob@example.net": SENT,
    }
    assert handler.rcpt_attempts["busy@example.com"] == 4
    assert handler.rcpt_attempts["nobody@example.com"] == 1
    assert handler.rcpt_attempts["slow@example.com"] == 3
    assert "451 4.2.1 Mailbox busy" in results["busy@example.com"].detail
    assert "550 5.1.1" in results["nobody@example.com"].detail
    delivered = [m.recipients[0] for m in handler.messages]
    assert delivered == ["ann@example.com", "slow@example.com", "bob@example.net"]
    assert len({m.peer for m in handler.messages}) == 1


def test_connection_lost_during_data_is_retried_on_a_new_connection(
    project: Project, smtp_server: tuple[Controller, Recorder]
) -> None:
    """When the server drops the connection mid-transaction the copy is retried on a new
    connection within the run and arrives once; later copies use the new connection."""
    controller, handler = smtp_server
    transport = open_smtp(project, controller.port, 'tls = "none"')
    recipients = ["ann@example.com", "drop@example.com", "bob@example.net"]
    try:
        results = [transport.send(SENDER, r, copy_for(r), TAGS) for r in recipients]
    finally:
        transport.close()
    assert [r.outcome for r in results] == [SENT] * 3
    assert [m.recipients[0] for m in handler.messages] == recipients
    assert handler.data_attempts["drop@example.com"] == 2
    peers = [m.peer for m in handler.messages]
    assert peers[0] != peers[1] == peers[2]


def test_idle_connection_closed_by_server_is_reopened_without_a_failed_attempt(
    project: Project,
) -> None:
    """A connection the server closed between copies is replaced before MAIL FROM, so
    even with no in-run retries every copy is sent."""
    handler = Recorder(close_after_each=True)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    transport = open_smtp(project, controller.port, 'tls = "none"', retries=0)
    recipients = [f"member{i}@example.com" for i in range(4)]
    try:
        results = [transport.send(SENDER, r, copy_for(r), TAGS) for r in recipients]
    finally:
        transport.close()
        controller.stop()
    assert [r.outcome for r in results] == [SENT] * 4
    assert len({m.peer for m in handler.messages}) == 4


def test_starttls_with_auth_and_a_private_ca(
    project: Project, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tls = "starttls", ca_file and a password from the environment, the copy goes
    out encrypted and authenticated to a server that demands both."""
    monkeypatch.setenv("RELAY_PASSWORD", PASSWORD)
    handler = Recorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=certificates.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    controller.start()
    extra = f"""tls = "starttls"
ca_file = "{certificates.ca}"
username = "{USERNAME}"
password_env = "RELAY_PASSWORD"
"""
    try:
        transport = open_smtp(project, controller.port, extra)
        try:
            result = transport.send(SENDER, "ann@example.com", copy_for("ann"), TAGS)
        finally:
            transport.close()
    finally:
        controller.stop()
    assert result.outcome == SENT, result.detail
    assert [(m.recipients, m.tls, m.login) for m in handler.messages] == [
        (["ann@example.com"], True, USERNAME.encode())
    ]


def test_wrong_password_keeps_mail_and_never_shows_the_password(
    project: Project,
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused login is TEMPORARY (the mail waits for the fix, it is not given up), it
    names the setting to check, and the password appears in no result or log line."""
    wrong = "wrong-password-7731"
    monkeypatch.setenv("RELAY_PASSWORD", wrong)
    handler = Recorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=certificates.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    controller.start()
    extra = f"""ca_file = "{certificates.ca}"
username = "{USERNAME}"
password_env = "RELAY_PASSWORD"
"""
    caplog.set_level(logging.DEBUG)
    try:
        transport = open_smtp(project, controller.port, extra, retries=1)
        try:
            results = [transport.send(SENDER, r, copy_for(r), TAGS) for r in ("a@x.org", "b@x.org")]
        finally:
            transport.close()
    finally:
        controller.stop()
    assert [r.outcome for r in results] == [TEMPORARY, TEMPORARY]
    assert "login as relay-user refused" in results[0].detail
    assert "$RELAY_PASSWORD" in results[0].detail
    assert results[1].detail.startswith("not attempted:")
    assert handler.messages == []
    everything = " ".join(r.detail for r in results) + caplog.text
    assert wrong not in everything and wrong.encode().hex() not in everything


def test_untrusted_certificate_is_refused_with_the_fix(
    project: Project, certificates: Certificates
) -> None:
    """Without ca_file a private CA's certificate is not trusted: nothing is sent in clear
    text, the copy stays TEMPORARY, and the detail names delivery.smtp.ca_file."""
    handler = Recorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=certificates.server_context(),
        require_starttls=True,
    )
    controller.start()
    try:
        transport = open_smtp(project, controller.port, 'tls = "starttls"', retries=0)
        try:
            result = transport.send(SENDER, "ann@example.com", copy_for("ann"), TAGS)
        finally:
            transport.close()
    finally:
        controller.stop()
    assert result.outcome == TEMPORARY
    assert "delivery.smtp.ca_file" in result.detail
    assert handler.messages == []


def test_implicit_tls(project: Project, certificates: Certificates) -> None:
    """With tls = "implicit" the connection is TLS from its first byte (SMTPS)."""
    handler = Recorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        ssl_context=certificates.server_context(),
    )
    controller.start()
    extra = f'tls = "implicit"\nca_file = "{certificates.ca}"\n'
    try:
        transport = open_smtp(project, controller.port, extra)
        try:
            result = transport.send(SENDER, "ann@example.com", copy_for("ann"), TAGS)
        finally:
            transport.close()
    finally:
        controller.stop()
    assert result.outcome == SENT, result.detail
    assert handler.messages[0].recipients == ["ann@example.com"]


def test_starttls_required_but_not_offered(
    project: Project, smtp_server: tuple[Controller, Recorder]
) -> None:
    """A server that does not offer STARTTLS gets no mail in clear text when tls is
    starttls (the default); the copy is TEMPORARY and the detail says what to change."""
    controller, handler = smtp_server
    transport = open_smtp(project, controller.port, retries=0)
    try:
        result = transport.send(SENDER, "ann@example.com", copy_for("ann"), TAGS)
    finally:
        transport.close()
    assert result.outcome == TEMPORARY
    assert "does not offer STARTTLS" in result.detail
    assert handler.messages == []


class Slammer:
    """Accepts TCP connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def stop(self) -> None:
        self.sock.close()
        self._thread.join(timeout=5)


def test_unreachable_server_costs_one_round_of_retries_per_run(project: Project) -> None:
    """When the server drops every connection, the first copy is tried 1 + retries times
    and reported TEMPORARY; the following copies are reported TEMPORARY without a new
    connection until max_backoff_seconds has passed."""
    slammer = Slammer()
    transport = open_smtp(project, slammer.port, 'tls = "none"\n', retries=2)
    try:
        first = transport.send(SENDER, "ann@example.com", copy_for("ann"), TAGS)
        after_first = slammer.accepted
        rest = [transport.send(SENDER, f"m{i}@example.com", b"x\n", TAGS) for i in range(5)]
    finally:
        transport.close()
        slammer.stop()
    assert first.outcome == TEMPORARY and "(3 tries this run)" in first.detail
    assert after_first == 3
    assert [r.outcome for r in rest] == [TEMPORARY] * 5
    # max_backoff_seconds is 0.05 s, so a probe may have slipped in while sending the rest.
    assert slammer.accepted - after_first <= 2


def test_username_without_password_in_environment_is_a_clear_error(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the SMTP transport with a username whose password variable is unset fails
    with a message naming the variable, before any mail is touched."""
    from routemail.transports import TransportError

    monkeypatch.delenv("RELAY_PASSWORD", raising=False)
    with pytest.raises(TransportError, match="RELAY_PASSWORD"):
        open_smtp(project, 2525, 'username = "u"\npassword_env = "RELAY_PASSWORD"\n')


def test_routemail_run_over_smtp_records_sent_failed_and_given_up(
    project: Project, smtp_server: tuple[Controller, Recorder], routemail_cli: RunCli
) -> None:
    """`routemail run` with transport smtp sends each member a copy over SMTP with the
    list's bounce address as envelope sender, records S for the delivered, G for a 5xx,
    F for a 4xx (the message stays pending), and gives the 4xx up after max_attempts."""
    controller, handler = smtp_server
    members = '"ann@example.com", "busy@example.com", "nobody@example.com"'
    project.write_config(
        BASE_CONFIG
        + f"""
[delivery]
transport = "smtp"
rate = 1000
retries = 1
backoff_seconds = 0.01
max_attempts = 2

[delivery.smtp]
host = "127.0.0.1"
port = {controller.port}
tls = "none"

[lists.helpers]
posters = "anyone"
members = [{members}]
"""
    )
    raw = (
        b"From: Dee <dee@example.com>\nTo: helpers@lists.example.org\n"
        b"Subject: Saturday\nMessage-ID: <run-1@example.com>\n\nWho can help?\n"
    )
    verdicts = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
    msg_id = project.spool.receive(raw, ["helpers@lists.example.org"], verdicts).id

    first = routemail_cli("run")
    assert first.returncode == 3, first.stderr  # copies deferred or given up
    codes = [
        line.split()[0] + " " + line.split()[2]
        for line in sidecar_lines(project, msg_id)
        if line[0] in "SFG"
    ]
    assert "S ann@example.com" in codes
    assert "F busy@example.com" in codes
    assert "G nobody@example.com" in codes
    assert project.spool.is_pending(msg_id)
    assert [m.recipients for m in handler.messages] == [["ann@example.com"]]
    assert handler.messages[0].sender.endswith("@lists.example.org")

    second = routemail_cli("run")
    assert second.returncode == 3, second.stderr
    lines = sidecar_lines(project, msg_id)
    assert any(line.startswith("G ") and "busy@example.com" in line for line in lines)
    assert not project.spool.is_pending(msg_id)
    assert [m.recipients for m in handler.messages] == [["ann@example.com"]]
    assert handler.rcpt_attempts["busy@example.com"] == 4
    assert handler.rcpt_attempts["nobody@example.com"] == 1


def sidecar_lines(project: Project, msg_id: str) -> list[str]:
    return project.spool.read_sidecar(msg_id).splitlines()
