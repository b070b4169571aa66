"""gunicorn settings for the receiver: `gunicorn -c deploy/gunicorn.conf.py mailrecv.wsgi:app`."""

import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

# /metrics adds up every worker's counters through files in this directory
# (prometheus_client's multiprocess mode); set before any worker imports it.
# Not under data/: the files are mmap'd, and a worker writing to a page that
# a full filesystem cannot back dies of SIGBUS in the middle of a post, so a
# spool's full disk would cost answers instead of a clean 503.
OWN_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if OWN_METRICS_DIR:
    memory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="mailrecv-metrics-", dir=memory
    )

bind = os.environ.get("MAILRECV_BIND", "127.0.0.1:8025")
workers = int(os.environ.get("MAILRECV_WORKERS", "2"))
# A receipt spends most of its time waiting for fsync. Threads let a worker
# read the next post meanwhile, and concurrent fsyncs share the disk's flushes.
worker_class = "gthread"
threads = int(os.environ.get("MAILRECV_THREADS", "4"))
# Bodies of up to 40 MiB arrive over slow links; leave room to read them.
timeout = 120
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
loglevel = "info"


class ReceiverLogger(Logger):
    """gunicorn's logger, without access lines for POST /mailrecv: the receiver
    logs each receipt itself, with the queue id an access line cannot show."""

    def access(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
        if environ.get("PATH_INFO") != "/mailrecv":
            super().access(resp, req, environ, request_time)


logger_class = ReceiverLogger


def on_starting(server):  # type: ignore[no-untyped-def]
    """Counts start again with the server: remove the files of an earlier one."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    except OSError as exc:  # metrics are worth a warning, never a receiver that is down
        server.log.warning("metrics directory %s unusable: %s", directory, exc)


def on_exit(server):  # type: ignore[no-untyped-def]
    """The counts of a stopped server are gone: so is the directory made for them."""
    if OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """A dead worker's live gauges stop counting; its counters are kept."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
