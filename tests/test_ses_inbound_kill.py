"""SIGKILL of the receiver while it reads a stored message from S3 for /ses-inbound."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import Project, running_receiver, start_receiver
from tests.s3_proxy import s3_proxy
from tests.test_ses_inbound import (
    Inbound,
    inbound_bucket,
    inbound_config,
    keys,
    post_text,
    receiver_options,
    signed,
    stored,
)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_kill_mid_object_keeps_it_and_the_retry_queues_it(tmp_path: Path, moto_url: str) -> None:
    """The receiver killed halfway through reading a 3 MB object (already spilled to an
    unnamed file): the object stays in S3, the queue holds nothing of it, and SNS's retry
    to the restarted receiver queues it once and deletes it."""
    s3 = inbound_bucket(moto_url)
    key, notification = stored(s3, post_text("killed", padding=3_000_000))
    body = signed(notification)
    project = Project(tmp_path / "site")
    project.root.mkdir(exist_ok=True)
    with s3_proxy(moto_url, stall=True) as proxy, ThreadPoolExecutor(1) as pool:
        project.write_config(inbound_config(proxy.url, timeout="30"))
        receiver = start_receiver(project, **receiver_options(project))
        try:
            posting = pool.submit(Inbound(receiver, project, proxy.url).post, body)
            assert proxy.stalled.wait(30), "the receiver never read the object"
            # The spool's directories are made when the first message outgrows memory.
            assert wait_for((project.data_dir / "maillist" / "QUEUE").is_dir), "never spilled"
            receiver.stop(signal.SIGKILL)
            assert posting.exception(timeout=30) is not None  # no answer: SNS retries
        finally:
            receiver.stop()
    assert keys(s3) == [key]
    maillist = project.data_dir / "maillist"
    assert [p.name for p in (maillist / "QUEUE").iterdir()] == []
    assert [p.name for p in (maillist / "tmp").iterdir()] == []
    project.write_config(inbound_config(moto_url))
    with running_receiver(project, **receiver_options(project)) as again:
        status, answer = Inbound(again, project, moto_url).post(body)
    assert status == 200, answer
    assert keys(s3) == []
    assert project.spool.ids() == [answer["id"]]
