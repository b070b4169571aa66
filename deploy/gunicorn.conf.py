"""gunicorn settings for the receiver: `gunicorn -c deploy/gunicorn.conf.py mailrecv.wsgi:app`."""

import os

from gunicorn.glogging import Logger

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
