"""Fan-out benchmark: per-recipient copies by byte splicing against deepcopy + as_bytes().

Prints, in one run, copies per second of routemail.copy for a ~50 KB multipart message
(text + HTML alternative + an attachment) to 10,000 recipients, the same for the obvious
approach (for each recipient: deepcopy the parsed message, edit headers and text parts,
as_bytes()) over fewer recipients, their ratio, and the peak memory of making copies of a
30 MB message for 5,000 recipients, measured in a fresh process per measurement.
"""

from __future__ import annotations

import argparse
import base64
import copy
import email.message
import email.policy
import os
import platform
import quopri
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from email.parser import BytesParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routemail import tokens
from routemail.config import MailingList, Site
from routemail.copy import CopyMaker
from routemail.copyheaders import ListIdentity

SITE = Site("lists.example.org", "admin@example.org", "https://lists.example.org", "Lists")
SECRET = b"bench-secret-0123456789abcdef0123456789"
MLIST = MailingList(
    name="volunteers",
    description="All volunteers",
    subject_prefix="[volunteers]",
    footer="-- \nYou are on {list} as {recipient}.\nLeave: {unsubscribe_url}",
)
IDENTITY = ListIdentity(MLIST, SITE, SECRET)
ROUNDS = 3
BIG_ATTACHMENT = 22_500_000  # bytes before base64: a 30 MB message


def message(attachment_bytes: int) -> bytes:
    """A Gmail-shaped post: QP text and HTML alternatives and a base64 attachment."""
    para = "Volunteers needed on Saturday at the food bank — café and snacks provided. "
    text = "\n".join(para * 3 for _ in range(20)) + "\n"
    html = "<html><body>" + "".join(f"<p>{para * 3}</p>\n" for _ in range(40)) + "</body></html>\n"
    blob = bytes((i * 7 + 3) % 256 for i in range(attachment_bytes))
    return (
        "From: Ann Author <ann@example.com>\n"
        "To: volunteers@lists.example.org\n"
        "Subject: Saturday at the food bank\n"
        "Date: Tue, 04 Mar 2025 09:21:08 -0800\n"
        "Message-ID: <bench@example.com>\n"
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1; bh=abc=; b=def=\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="mixed"\n\n'
        '--mixed\nContent-Type: multipart/alternative; boundary="alt"\n\n'
        '--alt\nContent-Type: text/plain; charset="UTF-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n\n"
        + quopri.encodestring(text.encode()).decode()
        + '\n--alt\nContent-Type: text/html; charset="UTF-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n\n"
        + quopri.encodestring(html.encode()).decode()
        + "\n--alt--\n\n"
        '--mixed\nContent-Type: application/pdf; name="flyer.pdf"\n'
        'Content-Disposition: attachment; filename="flyer.pdf"\n'
        "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(blob).decode() + "--mixed--\n"
    ).encode()


def recipients(n: int) -> list[str]:
    return [f"member{i}@example.net" for i in range(n)]


def spliced(raw: bytes, rcpts: list[str]) -> float:
    """Copies per second of routemail.copy, including building the CopyMaker."""
    start = time.perf_counter()
    maker = CopyMaker(raw, IDENTITY)
    for r in rcpts:
        maker.copy_for(r)
    return len(rcpts) / (time.perf_counter() - start)


def obvious(raw: bytes, rcpts: list[str]) -> float:
    """Copies per second of deepcopy + edit + as_bytes(), parsing once."""
    start = time.perf_counter()
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    for r in rcpts:
        msg = copy.deepcopy(parsed)
        assert isinstance(msg, email.message.EmailMessage)
        url = tokens.unsubscribe_url(SITE, SECRET, MLIST.name, r, int(time.time()))
        footer = MLIST.footer.format(list=MLIST.name, recipient=r, unsubscribe_url=url)
        author = msg["From"]
        for name in ("DKIM-Signature", "From", "Reply-To", "Sender", "Subject"):
            del msg[name]
        msg["From"] = f"Ann Author via {MLIST.name} <{IDENTITY.address}>"
        msg["Reply-To"] = str(author)
        msg["Subject"] = f"{MLIST.subject_prefix} Saturday at the food bank"
        msg["Sender"] = IDENTITY.bounces
        msg["List-Id"] = f"{MLIST.description} <{IDENTITY.list_id}>"
        msg["List-Unsubscribe"] = f"<{url}>, <mailto:{IDENTITY.unsubscribe_address}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["List-Post"] = f"<mailto:{IDENTITY.address}>"
        msg["Precedence"] = "list"
        msg["X-Loop"] = SITE.domain
        for part in msg.walk():
            if part.get_content_type() == "text/plain" and not part.is_attachment():
                part.set_content(part.get_content() + footer + "\n", cte="quoted-printable")
            elif part.get_content_type() == "text/html":
                body = part.get_content().replace("</body>", f"<p>{footer}</p></body>")
                part.set_content(body, subtype="html", cte="quoted-printable")
        msg.as_bytes()
    return len(rcpts) / (time.perf_counter() - start)


def memory_child(path: str, count: int) -> None:
    """Runs in a fresh process: read the message, make count copies, discard each.
    count < 0 writes the big message to path instead."""
    if count < 0:
        Path(path).write_bytes(message(BIG_ATTACHMENT))
        return
    raw = Path(path).read_bytes()
    if count:
        maker = CopyMaker(raw, IDENTITY)
        for r in recipients(count):
            maker.copy_for(r)  # sent and dropped, as a transport does
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def child(path: Path, count: int) -> int:
    """Run memory_child in a new interpreter. A forked child starts with the parent's
    peak RSS as its own, so the parent stays small: it never holds the big message."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory", str(path), str(count)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip() or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory", nargs=2, metavar=("FILE", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--obvious-recipients", type=int, default=300)
    parser.add_argument("--big-recipients", type=int, default=5_000)
    args = parser.parse_args()
    if args.memory:
        memory_child(args.memory[0], int(args.memory[1]))
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.eml"
        child(path, -1)
        size = path.stat().st_size
        base = child(path, 0)
        top = child(path, args.big_recipients)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    raw = message(30_000)
    print(f"message: {len(raw) / 1000:.1f} KB (text + HTML alternative + attachment)")
    fast = [spliced(raw, recipients(args.recipients)) for _ in range(ROUNDS)]
    slow = [obvious(raw, recipients(args.obvious_recipients)) for _ in range(ROUNDS)]
    f, s = statistics.median(fast), statistics.median(slow)
    print(
        f"routemail.copy: {f:10.0f} copies/s  ({args.recipients} recipients, rounds: "
        + ", ".join(f"{x:.0f}" for x in fast)
        + ")"
    )
    print(
        f"deepcopy+edit+as_bytes: {s:8.0f} copies/s  ({args.obvious_recipients} recipients, "
        "rounds: " + ", ".join(f"{x:.0f}" for x in slow) + ")"
    )
    print(f"ratio: {f / s:.0f}x (goal: at least 20x)")
    print(
        f"memory: {size / 1e6:.1f} MB message to {args.big_recipients} recipients: "
        f"peak RSS {top / 1e6:.0f} MB = {top / size:.2f}x the message "
        f"(goal: under 5x); reading it alone: {base / 1e6:.0f} MB = {base / size:.2f}x"
    )


if __name__ == "__main__":
    main()
