"""deploy/nginx.conf run by a real nginx on loopback, in front of a receiver under gunicorn,
and the slow clients it is there to hold off."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
# What the tests change in the shipped site: a loopback port instead of 443,
# the receiver's port, and a certificate of their own or plain HTTP.
BYTE_EVERY = 2.0  # seconds between two bytes of a slow client
SLOW_REQUEST_HEAD = (
    b"POST /mailrecv HTTP/1.1\r\nHost: lists.example.org\r\nContent-Type: message/rfc822\r\n"
    b"Content-Length: 4096\r\nX-Mailrecv-Timestamp: 1700000000\r\n\r\n"
)
TLS_LINES = ("listen [::]:443 ssl;", "ssl_certificate ", "ssl_certificate_key ")


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def self_signed(directory: Path) -> Certificate:
    """A one-day certificate for 127.0.0.1 (trust it with SSL_CERT_FILE=cert)."""
    made = Certificate(directory / "cert.pem", directory / "key.pem")
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(made.key), "-out", str(made.cert)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *subject,
            *files,
        ],
        check=True,
        capture_output=True,
    )
    return made


def site_for_test(listen_port: int, receiver_port: int, tls: Certificate | None = None) -> str:
    """deploy/nginx.conf on 127.0.0.1:listen_port, proxying to the receiver on
    receiver_port: with TLS as shipped when given a certificate, else plain HTTP.
    Fails if the file no longer has the lines this changes."""
    text = SITE.read_text()
    for expected in ("listen 443 ssl;", "server 127.0.0.1:8025;", *TLS_LINES):
        assert expected in text, f"deploy/nginx.conf no longer has {expected!r}"
    text = text.replace("server 127.0.0.1:8025;", f"server 127.0.0.1:{receiver_port};")
    if tls is None:
        lines = [line for line in text.splitlines() if not line.strip().startswith(TLS_LINES)]
        return "\n".join(lines).replace("listen 443 ssl;", f"listen 127.0.0.1:{listen_port};")
    text = re.sub(r"ssl_certificate .*;", f"ssl_certificate {tls.cert};", text)
    text = re.sub(r"ssl_certificate_key .*;", f"ssl_certificate_key {tls.key};", text)
    text = text.replace("listen [::]:443 ssl;", "")
    return text.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;")


def main_config(directory: Path, site: str) -> str:
    """A whole nginx.conf: the site inside http {}, every path under directory."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach directory
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} info;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n    access_log {directory / 'access.log'};\n{temp_paths}\n{site}\n}}\n"
    )


@contextlib.contextmanager
def running_nginx(
    directory: Path, listen_port: int, receiver_port: int, tls: Certificate | None = None
) -> Iterator[str]:
    """nginx serving deploy/nginx.conf on 127.0.0.1:listen_port; its base URL."""
    assert NGINX is not None
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(main_config(directory, site_for_test(listen_port, receiver_port, tls)))
    check = subprocess.run(
        [NGINX, "-t", "-p", str(directory), "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(listen_port, process)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{listen_port}"
    finally:
        os.killpg(process.pid, signal.SIGQUIT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError("nginx did not listen within 30 s")


class SlowClient(threading.Thread):
    """A client that sends a request a byte every BYTE_EVERY seconds: from the start of its
    head, or (with body=True) from the start of its body, the head sent at once."""

    def __init__(self, port: int, *, body: bool) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.body = body
        self.sent = 0
        self.cut_at: float | None = None  # when the server dropped it
        self.done = threading.Event()

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            if self.body:
                sock.sendall(SLOW_REQUEST_HEAD)
            payload = b"x" * 4096 if self.body else SLOW_REQUEST_HEAD
            for byte in payload:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    self.cut_at = time.monotonic()
                    return
                self.sent += 1
                if self.done.wait(BYTE_EVERY):
                    return
