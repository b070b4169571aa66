"""`make demo`: the example mail through the real receiver and routemail, then a table."""

from __future__ import annotations

import collections
import email.parser
import email.policy
import email.utils
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from filelock import FileLock  # noqa: E402

from mailrecv.local import LocalReceiver, ReceiverNotUp, start  # noqa: E402
from mailxfer.post import error_text, post_message  # noqa: E402
from routemail import sidecar  # noqa: E402

EXAMPLES = ROOT / "examples"
DATA = ROOT / "data" / "demo"
CONFIG = EXAMPLES / "lists.toml"
PASS = dict.fromkeys(sidecar.VERDICT_NAMES, "PASS")
# Short words for the table; every other event code is shown as itself.
OUTCOME_WORDS = {
    sidecar.SENT: "sent",
    sidecar.LIST_SENT: "list done",
    sidecar.MODERATION: "held for moderation",
    sidecar.APPROVED: "approved",
    sidecar.UNKNOWN: "forwarded to admin",
    sidecar.FAILED: "temporary failure",
    sidecar.GAVE_UP: "gave up",
    sidecar.SKIPPED: "skipped",
    sidecar.REJECTED: "rejected",
    sidecar.EXPIRED: "expired",
    sidecar.DEFERRED: "deferred",
    sidecar.DISCARDED: "discarded",
    sidecar.DROPPED: "discarded by a moderator",
    sidecar.TOLD: "author told",
    sidecar.DELIVERED: "delivered",
    sidecar.BOUNCED: "bounced",
    sidecar.COMPLAINED: "complained",
    sidecar.DELAYED: "delayed",
    sidecar.UNDELIVERABLE: "refused by SES",
}


def headers_of(raw: bytes) -> email.message.Message:
    return email.parser.BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)


def envelope_recipients(raw: bytes) -> list[str]:
    """What SES would report as recipients: the To and Cc addresses on our domain."""
    head = headers_of(raw)
    found = email.utils.getaddresses(
        [str(v) for v in head.get_all("To", []) + head.get_all("Cc", [])]
    )
    return [addr for _, addr in found if addr.lower().endswith("@lists.example.org")]


def env(secret: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(ROUTEMAIL_CONFIG=str(CONFIG), ROUTEMAIL_DATA=str(DATA), MAILRECV_SECRET=secret)
    return e


def start_receiver(secret: str, log: io.BufferedWriter) -> LocalReceiver:
    try:
        return start(env(secret), stdout=log, stderr=subprocess.STDOUT)
    except ReceiverNotUp as exc:
        raise SystemExit(f"demo: {exc}; see {DATA / 'gunicorn.log'}") from None


def routemail(secret: str, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "routemail", *args, "--json"],
        env=env(secret),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise SystemExit(f"demo: routemail {' '.join(args)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def wait_until_routed(secret: str, timeout: float = 90.0) -> bool:
    """Wait for no pending entries and no routemail run holding the lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [e for e in routemail(secret, "queue") if e["state"] == "pending"]:
            # The detached runs the receiver started must be gone before we exit.
            lock = FileLock(str(DATA / "maillist" / "LOCK"))
            with lock.acquire(timeout=max(1.0, deadline - time.monotonic())):
                pass
            return True
        time.sleep(0.3)
    return False


def outcome(events: list[dict[str, Any]]) -> str:
    counts: collections.Counter[str] = collections.Counter()
    order: list[str] = []
    for e in events:
        code = e["code"]
        if code in (sidecar.RECEIVED, sidecar.VERDICTS):
            continue
        if code not in counts:
            order.append(code)
        counts[code] += 1
    if not order:
        return "no action recorded"
    parts = []
    for code in order:
        word = OUTCOME_WORDS.get(code, code)
        parts.append(f"{word} x{counts[code]}" if counts[code] > 1 else word)
    return ", ".join(parts)


def copies_in_outbox(message_id: str) -> int:
    """Outbox files whose own Message-ID is this one (copies keep it for threading)."""
    new = DATA / "maillist" / "outbox" / "new"
    if not message_id or not new.is_dir():
        return 0
    count = 0
    for path in new.iterdir():
        head = path.read_bytes().split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
        if str(headers_of(head + b"\n\n").get("Message-ID", "")).strip() == message_id:
            count += 1
    return count


def main() -> int:
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir(parents=True)
    secret = secrets.token_hex(24)
    examples = sorted(EXAMPLES.glob("*.eml"))
    with open(DATA / "gunicorn.log", "wb") as log:
        receiver = start_receiver(secret, log)
        url = receiver.url
        try:
            print(f"receiver: gunicorn on {url} (log: {DATA / 'gunicorn.log'})")
            posted = []
            for path in examples:
                raw = path.read_bytes()
                to = envelope_recipients(raw)
                result = post_message(url + "/mailrecv", secret.encode(), io.BytesIO(raw), to, PASS)
                if not result.ok:
                    print(f"  {path.name}: {result.status} {error_text(result)}")
                    continue
                answer = json.loads(result.body)
                print(f"  posted {path.name} -> {', '.join(to)}: id {answer['id']}")
                posted.append((path, raw, to, answer["id"]))
            if not wait_until_routed(secret):
                print("demo: routemail did not finish within 90 s; the table shows where it got")
        finally:
            receiver.stop()

    print()
    rows = [("SUBJECT", "TO", "STATE", "WHAT HAPPENED", "COPIES")]
    for _, raw, to, msg_id in posted:
        head = headers_of(raw)
        shown = routemail(secret, "show", msg_id)
        rows.append(
            (
                str(head.get("Subject", ""))[:36],
                ", ".join(t.split("@")[0] for t in to),
                shown["state"],
                outcome(shown["events"]),
                str(copies_in_outbox(str(head.get("Message-ID", "")).strip())),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    new = DATA / "maillist" / "outbox" / "new"
    total = len(list(new.iterdir())) if new.is_dir() else 0
    print(f"\nThe outbox holds {total} messages (list copies, moderation requests, forwards):")
    print(f"  mutt -f {DATA / 'maillist' / 'outbox'}")
    print(f"The queue: .venv/bin/routemail --config {CONFIG} --data {DATA} queue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
