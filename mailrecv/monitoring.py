"""GET /healthz and GET /metrics: whether this site can take and route mail, and its figures.

/metrics speaks the Prometheus text format. Posts are counted by the
receiver's workers as they answer them (prometheus_client's multiprocess
mode when PROMETHEUS_MULTIPROC_DIR is set, as deploy/gunicorn.conf.py does,
so every worker's counts add up). Everything else is read at scrape time
from what routemail keeps anyway: the queue (one scandir), and
data/run-state.json, which each `routemail run` rewrites with the copies it
counted by list, the last run's duration and the transport's state. A scrape
therefore never depends on a run being alive, and runs write nothing extra.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailrecv.settings import Settings
from routemail import health, runstate

log = logging.getLogger("mailrecv")
TOKEN_ENV = "MAILRECV_METRICS_TOKEN"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Registered per scrape (below), not in prometheus_client's global registry.
POSTS = Counter(
    "mailrecv_posts_total", "Posts to /mailrecv, by the status answered.", ["status"], registry=None
)
SES_INBOUND_POSTS = Counter(
    "mailrecv_ses_inbound_posts_total",
    "SNS posts to /ses-inbound, by the status answered.",
    ["status"],
    registry=None,
)


def count_post(status: int, counter: Counter = POSTS) -> None:
    """Count a post's answer; a failure to count never changes the answer."""
    try:
        counter.labels(status=str(status)).inc()
    except Exception:  # e.g. PROMETHEUS_MULTIPROC_DIR not writable
        log.warning("cannot count a post for /metrics", exc_info=True)


def register(app: Flask, settings: Settings) -> None:
    site = health.Site(
        settings.config_path, settings.spool, settings.secret is not None, settings.max_size
    )

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        problems = health.problems(site)
        if problems:
            return jsonify(ok=False, error="; ".join(problems), problems=problems), 503
        return jsonify(ok=True), 200

    @app.get("/metrics")
    def metrics() -> Response | tuple[Response, int]:
        refusal = _refusal()
        if refusal:
            return jsonify(error=refusal), 403
        return Response(generate_latest(_registry(settings)), mimetype=CONTENT_TYPE_LATEST)


def _refusal() -> str | None:
    """Why this client may not read /metrics, or None. With a token in the
    environment, only a matching bearer token is let in; without one, only
    clients on this host that did not come through a proxy."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        return f"/metrics needs the bearer token from ${TOKEN_ENV}"
    try:
        loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        loopback = False
    if loopback and "X-Forwarded-For" not in request.headers:
        return None
    return f"/metrics answers only on this host; set ${TOKEN_ENV} to scrape it from elsewhere"


def _registry(settings: Settings) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(POSTS)
        registry.register(SES_INBOUND_POSTS)
    registry.register(SiteCollector(settings))
    return registry


class SiteCollector(Collector):
    """Figures read at scrape time from the queue and data/run-state.json."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        state = runstate.load(self.settings.data_dir)
        copies = CounterMetricFamily(
            "routemail_copies",
            "Copies by list and outcome (sent, deferred, gave_up), over every run.",
            labels=["list", "outcome"],
        )
        for name, counts in sorted(state.copies.items()):
            for outcome, n in sorted(counts.items()):
                copies.add_metric([name, outcome], n)
        yield copies
        yield CounterMetricFamily("routemail_runs", "routemail runs that worked.", value=state.runs)
        last = state.last_run
        if last is not None:
            yield _gauge(
                "routemail_last_run_duration_seconds", "How long the last run took.", last.duration
            )
            yield _gauge(
                "routemail_last_run_timestamp_seconds", "When the last run ended.", last.finished
            )
            yield _gauge(
                "routemail_last_run_ok",
                "1 if the last run handed over every copy, 0 if not.",
                1.0 if last.result == "ok" else 0.0,
            )
        yield _gauge(
            "routemail_transport_circuit_open",
            "1 if the last run ended with the transport taking nothing.",
            1.0 if state.transport.circuit_open else 0.0,
        )

    def _queue(self) -> Iterator[Metric]:
        try:
            q = health.queue(self.settings.spool)
        except OSError:
            return  # no queue to count: /healthz says why
        yield _gauge("routemail_queue_entries", "Entries in the queue.", q.entries)
        yield _gauge("routemail_queue_pending", "Entries waiting to be routed.", q.pending)
        yield _gauge(
            "routemail_oldest_pending_age_seconds",
            "Seconds since the oldest pending entry arrived (0 with none pending).",
            q.oldest_pending_age(time.time()) or 0.0,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
