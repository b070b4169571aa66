"""A burst of posts to the receiver under gunicorn starts one `routemail run` for them all."""

from __future__ import annotations

import io
import threading
import time

from mailxfer.post import post_message, receipt_of
from tests.conftest import BASE_CONFIG, SECRET, Project, running_receiver
from tests.mailbox import recipients

PASS = dict.fromkeys(("dkim", "dmarc", "spf", "spam", "virus"), "PASS")
POSTS = 200
# The list's members come from a program that waits for the test to open the
# gate: the run started by the first post is held at its first message for the
# whole burst, so every other post arrives while it works, however the CPU is shared.
GATED_LIST = """
[[dynamic]]
pattern = 'gate-(?P<n>[0-9]+)'
resolver = "command"
command = [
    "/bin/sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.05; done; echo ann@example.com', "{gate}"
]
timeout = 300
"""


def message(n: int) -> bytes:
    return (
        f"From: Bob <bob@example.net>\r\nTo: gate-1@lists.example.org\r\n"
        f"Subject: Burst {n}\r\nMessage-ID: <burst-{n}@example.net>\r\n\r\nPost {n}.\r\n"
    ).encode()


def test_a_burst_of_posts_starts_one_run(project: Project) -> None:
    """200 concurrent posts with on_receipt = "run" start one `routemail run` (the receiver
    hands it the lock it took, so posts arriving while it starts up find the lock taken),
    and that run leaves nothing unrouted."""
    gate = project.root / "gate-open"
    project.write_config(
        BASE_CONFIG.replace('on_receipt = "none"', 'on_receipt = "run"')
        + GATED_LIST.format(gate=gate)
    )
    spool = project.spool
    with running_receiver(project, workers=2) as receiver:
        ids = _post_all_at_once(receiver.mailrecv_url)
        gate.touch()
        deadline = time.monotonic() + 120
        while any(spool.is_pending(i) for i in ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = receiver.log_path.read_text()
    assert len(set(ids)) == POSTS
    assert [i for i in ids if spool.is_pending(i)] == []
    assert log.count("started routemail run") == 1, _started_lines(log)
    assert recipients(project.data_dir, "Burst") == {"ann@example.com": POSTS}


def _post_all_at_once(url: str) -> list[str]:
    """POSTS signed posts from as many threads released together; their queue ids."""
    ids: list[str] = []
    failures: list[str] = []
    barrier = threading.Barrier(POSTS)

    def send(n: int) -> None:
        barrier.wait()
        try:
            result = post_message(
                url, SECRET.encode(), io.BytesIO(message(n)), ["gate-1@lists.example.org"], PASS
            )
            ids.append(receipt_of(result).id)
        except Exception as exc:  # reported below, with every other failure
            failures.append(f"post {n}: {exc!r}")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(POSTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    return ids


def _started_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "started routemail run" in line]
