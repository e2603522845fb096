"""gunicorn settings, read by a bare `gunicorn wsgi:app` from the project root.

Everything comes from the environment (or a `.env` file in the working
directory; the real environment wins), so one image serves every deploy.
README.md, "Configuration", lists the variables; docs/scaling.md says how to size them.
"""

import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import time

from dotenv import find_dotenv, load_dotenv
from gunicorn.glogging import Logger

# Before anything reads the environment: the master reads it here, and the
# workers inherit it when they fork.
load_dotenv(find_dotenv(usecwd=True), override=False)


def _int(name, default, minimum=0, maximum=None):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        _refuse(f"{name} must be an integer {bounds}, not {raw!r}")
    return value


def _refuse(problem):
    # One line, as wsgi.py says a configuration error, instead of gunicorn's
    # "Failed to read config file" and a traceback.
    print(f"configuration error: {problem}", file=sys.stderr)
    raise SystemExit(4)


def _flag(name, default=False):
    # As todo.config.flag reads the app's (the master does not import the package).
    raw = os.environ.get(name, "").strip().lower()
    return default if not raw else raw not in ("0", "false", "no", "off", "none")


def _cores():
    """CPUs this process may use: its CPU set, capped by a cgroup v2 quota (a
    container's --cpus), which os.cpu_count() ignores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores or 1


class _JSONLogger(Logger):
    """gunicorn's own lines (boot, worker exits) as JSON like the app's, unless LOG_FORMAT=text."""

    class Formatter(logging.Formatter):
        def format(self, record):
            entry = {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "pid": record.process,
            }
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
            return json.dumps(entry)

    def setup(self, cfg):
        super().setup(cfg)
        formatter = self.Formatter()
        formatter.converter = time.gmtime
        for handler in self.error_log.handlers + self.access_log.handlers:
            handler.setFormatter(formatter)


# 127.0.0.1 unless told otherwise, so a laptop does not expose the API to its
# network; the container image sets HOST=0.0.0.0.
bind = [f"{os.environ.get('HOST') or '127.0.0.1'}:{_int('PORT', 8000, 1, 65535)}"]

# One process per core, sync workers. gthread (2 threads) served about 40 % more
# PUTs, but its keep-alive connections spread unevenly over the workers and the
# p95 at 100 connections was three times the p50 (docs/scaling.md). sync workers
# take each connection from the shared accept queue: an even, shorter tail.
workers = _int("WEB_CONCURRENCY", _cores(), 1)
worker_class = (os.environ.get("GUNICORN_WORKER_CLASS") or "sync").strip()
if worker_class not in ("sync", "gthread"):  # the two measured (docs/scaling.md)
    _refuse(f"GUNICORN_WORKER_CLASS must be sync or gthread, not {worker_class!r}")
threads = _int("GUNICORN_THREADS", 1, 1)

# A worker silent this long is killed and replaced. Requests are bounded far
# below this by DB_STATEMENT_TIMEOUT_MS and DB_POOL_TIMEOUT.
timeout = _int("GUNICORN_TIMEOUT", 30)
# SIGTERM (docker stop, a rolling deploy): stop accepting, finish what is in
# flight for up to this long. Keep it under the orchestrator's kill delay (10 s in Docker).
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 8)
# Behind a load balancer that keeps connections open (its idle timeout must be longer).
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Recycle workers now and then so a slow leak cannot grow for ever; the jitter
# keeps them from all restarting at the same moment. Not too often: a new worker
# starts with an empty page cache and pool (at 1000 requests/s, 10000 requests
# were a restart every 10 s per worker).
max_requests = _int("GUNICORN_MAX_REQUESTS", 200000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 20000)

# gunicorn's own messages on stderr. Its access log is off: the app writes one
# JSON line per request that also carries the request id, route template, user
# and duration (todo/hooks.py); a second, poorer line per request would only
# double the log volume. GUNICORN_ACCESS_LOG=- turns it back on.
errorlog = "-"
_level = (os.environ.get("LOG_LEVEL") or "info").strip().lower()
loglevel = {"warn": "warning", "fatal": "critical"}.get(_level, _level)  # as the app reads it
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
if (os.environ.get("LOG_FORMAT") or "json").lower() != "text":
    logger_class = _JSONLogger

# Requests the contract answers itself must reach the app: a token over 8 KiB is a
# 401 INVALID_TOKEN (gunicorn's default header line limit, 8190 bytes, would answer
# its own HTML 431 first), and a list URL with a cursor (up to 4096 characters), a
# search and a user id must fit the request line (default 4094; 8190 is its maximum).
limit_request_field_size = 16384
limit_request_line = 8190

# Forwarded headers are trusted through TRUSTED_PROXY_COUNT (werkzeug's ProxyFix,
# in the app), one switch for every server; gunicorn's own check trusts nobody
# unless FORWARDED_ALLOW_IPS says so, so the two never apply twice.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")

# gunicorn's admin socket (gunicornc) defaults to one path per user account,
# which every gunicorn on a shared host would fight over; nothing here uses it.
control_socket_disable = not _flag("GUNICORN_CONTROL_SOCKET")

# Off by default (PITFALLS.md §3, in ../shared): each worker imports the app itself. With
# GUNICORN_PRELOAD=true, post_fork below gives each worker its own connections.
preload_app = _flag("GUNICORN_PRELOAD")

# Metrics: prometheus-client keeps each worker's numbers in files of one
# directory so that a scrape of any worker sums all of them.
_metrics = _flag("METRICS_ENABLED")
# METRICS_PORT: served from the master on a port of its own (when_ready).
_metrics_port = _int("METRICS_PORT", 0, 0, 65535) if _metrics else 0
_own_metrics_dir = None
if _metrics and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = tempfile.mkdtemp(prefix="todo-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def on_starting(server):
    # Files left by a previous run would be summed into this one's numbers.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if _metrics and directory:
        os.makedirs(directory, exist_ok=True)
        for name in glob.glob(os.path.join(directory, "*.db")):
            os.remove(name)


def when_ready(server):
    # METRICS_PORT: serve /metrics from the master on a port of its own (not
    # published with the API), instead of on the app's port.
    port = _metrics_port
    if port:
        # Not todo.metrics: the master does not import the app unless preloading.
        from prometheus_client import (  # noqa: PLC0415
            CollectorRegistry,
            multiprocess,
            start_http_server,
        )

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        host = os.environ.get("METRICS_HOST") or "127.0.0.1"
        start_http_server(port, addr=host, registry=registry)
        server.log.info("Metrics on http://%s:%s/metrics", host, port)


def post_fork(server, worker):
    # Only with preload_app: the app (and its engines) came from the master.
    # Drop the inherited pools without closing the master's sockets, so every
    # worker opens connections of its own (SQLAlchemy, "pooling with os.fork()").
    app = server.app.callable
    if app is not None:
        from todo.extensions import db  # noqa: PLC0415

        with app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)


def child_exit(server, worker):
    if _metrics:
        from prometheus_client import multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
