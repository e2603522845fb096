"""Logging: one JSON object a line (or plain text), each tagged with its request id"""

import json
import logging
import sys
import time

from flask import g, has_request_context

# Attributes every LogRecord has; anything else was passed in `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = g.get("request_id") if has_request_context() else None
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": record.request_id,
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure(level: str, fmt: str) -> None:
    """Send the app's logs to stdout; called once per application."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(RequestIdFilter())
    formatter = logging.Formatter(TEXT_FORMAT) if fmt == "text" else JSONFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    # The app's logger (and todo.access), and the rate limiter's (storage errors).
    for name in ("todo", "flask-limiter"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False  # not twice when something (alembic's env.py) configures the root
