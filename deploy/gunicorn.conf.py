"""gunicorn settings for the receiver: `gunicorn -c deploy/gunicorn.conf.py mailrecv.wsgi:app`."""

import os
from pathlib import Path

from gunicorn.glogging import Logger

# /metrics adds up every worker's counters through files in this directory
# (prometheus_client's multiprocess mode); set before any worker imports it.
METRICS_DIR = Path(os.environ.get("ROUTEMAIL_DATA", "data")).resolve() / "metrics"
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(METRICS_DIR))

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


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """A dead worker's live gauges stop counting; its counters are kept."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
