"""The WSGI entry point for gunicorn and the CGI wrapper: `mailrecv.wsgi:app`."""

import logging

from mailrecv.app import create_app


def _log_to_stderr() -> None:
    """The receiver's own lines (receipts, refusals, errors) on stderr, beside gunicorn's."""
    logger = logging.getLogger("mailrecv")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "[%Y-%m-%d %H:%M:%S %z]",
        )
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


_log_to_stderr()
app = create_app()
