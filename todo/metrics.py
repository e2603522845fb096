"""Prometheus metrics at /metrics: requests, latency and the database pool.

Under gunicorn, each worker is a process of its own. With PROMETHEUS_MULTIPROC_DIR
set (gunicorn.conf.py sets it when METRICS_ENABLED), prometheus-client keeps every
worker's values in files there, and a scrape, answered by any one worker, adds
them all up. Without it (tests, `flask run`) the numbers are this process's own.
"""

import hmac
import os
import time

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from todo.auth import bearer_token, unauthorized
from todo.config import ConfigError, flag, integer, setting
from todo.extensions import db

UNMATCHED = "<unmatched>"  # 404s for unknown paths share one label, whatever the path

REQUESTS = Counter(
    "todo_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "todo_http_request_duration_seconds",
    "Time to answer a request, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Sampled by each worker when a request takes a connection and after it has
# given it back, so every worker's gauges stay current although a scrape reaches
# only one of them; the live processes' values are summed.
POOL_CHECKED_OUT = Gauge(
    "todo_db_pool_checked_out",
    "Database connections in use by requests.",
    multiprocess_mode="livesum",
)
POOL_OPEN = Gauge(
    "todo_db_pool_connections",
    "Database connections open (in use and idle).",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "todo_db_pool_size",
    "Configured pool size (DB_POOL_SIZE per worker).",
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "todo_db_pool_overflow",
    "Connections open beyond the pool size (up to DB_MAX_OVERFLOW per worker).",
    multiprocess_mode="livesum",
)

bp = Blueprint("metrics", __name__)


def registry():
    """What a scrape reads: all workers' files in multiprocess mode, else this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return REGISTRY


@bp.get("/metrics")
def metrics():
    token = current_app.config["METRICS_TOKEN"]
    if token and not hmac.compare_digest(bearer_token().encode(), token.encode()):
        unauthorized("INVALID_TOKEN", "The token is not valid.", True)
    return Response(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def observe(response):
    route = request.url_rule.rule if request.url_rule else UNMATCHED
    labels = (route, request.method, str(response.status_code))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(time.perf_counter() - g.started)
    return response


def sample_pool(pool):
    if not isinstance(pool, sa.pool.QueuePool):
        return
    POOL_CHECKED_OUT.set(pool.checkedout())
    POOL_OPEN.set(pool.checkedin() + pool.checkedout())
    POOL_SIZE.set(pool.size())
    POOL_OVERFLOW.set(max(pool.overflow(), 0))


def sample_pools(*args):
    for engine in db.engines.values():
        sample_pool(engine.pool)


def init_app(app):
    """METRICS_ENABLED: count requests and serve /metrics (behind METRICS_TOKEN if set)."""
    if not setting(app, "METRICS_ENABLED", False, flag):
        return
    token = setting(app, "METRICS_TOKEN", None)
    # METRICS_PORT: gunicorn's master serves the numbers on their own port
    # (gunicorn.conf.py), and the API's port has no /metrics.
    separate_port = setting(app, "METRICS_PORT", 0, integer)
    if app.config["ENVIRONMENT"] == "production" and not (token or separate_port):
        raise ConfigError("METRICS_ENABLED in production needs METRICS_TOKEN or METRICS_PORT")
    if not separate_port:
        app.register_blueprint(bp)
    app.after_request(observe)
    with app.app_context():
        for engine in db.engines.values():
            sa.event.listen(engine, "checkout", lambda *_, e=engine: sample_pool(e.pool))
    # First in the list, so it runs last: after Flask-SQLAlchemy has handed the
    # request's connection back to the pool (a checkin event fires before that).
    app.teardown_appcontext_funcs.insert(0, sample_pools)
