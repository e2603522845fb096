"""Per-request plumbing: the request id, security headers, and the access log line"""

import logging
import re
import time
import uuid

from flask import g, request

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

access_log = logging.getLogger("todo.access")


def start_request():
    g.started = time.perf_counter()
    client_id = request.headers.get("X-Request-ID", "")
    g.request_id = client_id if REQUEST_ID.fullmatch(client_id) else str(uuid.uuid4())


def finish_response(response):
    response.headers["X-Request-ID"] = g.request_id
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.status_code in (204, 304):
        response.headers.pop("Content-Type", None)  # no body, so no type
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "request_id": g.request_id,
            "method": request.method,
            "route": request.url_rule.rule if request.url_rule else None,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.started) * 1000, 2),
            "user_id": g.get("user_id"),
            "remote_addr": request.remote_addr,
        },
    )
    return response


def init_app(app):
    app.before_request(start_request)
    app.after_request(finish_response)
