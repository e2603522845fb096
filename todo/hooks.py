"""Per-request plumbing: the request id, proxies, security headers, and the access log line"""

import logging
import re
import time
import uuid

from flask import current_app, g, request
from flask.sessions import SessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from todo.config import integer, setting

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
HSTS = "max-age=31536000"  # a year; no includeSubDomains: the API does not own its siblings

access_log = logging.getLogger("todo.access")


def start_request():
    g.started = time.perf_counter()
    client_id = request.headers.get("X-Request-ID", "")
    g.request_id = client_id if REQUEST_ID.fullmatch(client_id) else str(uuid.uuid4())


def _error_code(response):
    if response.status_code < 400 or not response.is_json:
        return None
    body = response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def finish_response(response):
    status = response.status_code
    response.headers["X-Request-ID"] = g.request_id
    response.headers["X-Content-Type-Options"] = "nosniff"
    if status in (204, 304):
        response.headers.pop("Content-Type", None)  # no body, so no type
    if (status == 405 or request.method == "OPTIONS") and "Allow" in response.headers:
        # werkzeug lists the methods in the order of a set, which changes with each process
        response.headers["Allow"] = ", ".join(sorted(response.allow))
    path = request.path
    if path == "/api" or path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    if current_app.config["ENVIRONMENT"] == "production":
        response.headers["Strict-Transport-Security"] = HSTS
    level = logging.ERROR if status >= 500 else logging.INFO
    if not access_log.isEnabledFor(level):
        return response
    # Never the query string, headers or body: they may carry a token or a user's text.
    access_log.log(
        level,
        "%s %s %s",
        request.method,
        request.path,
        status,
        extra={
            "request_id": g.request_id,
            "method": request.method,
            "route": request.url_rule.rule if request.url_rule else None,
            "status": status,
            "error_code": _error_code(response),
            "duration_ms": round((time.perf_counter() - g.started) * 1000, 2),
            "user_id": g.get("user_id"),
            "remote_addr": request.remote_addr,
        },
    )
    return response


class NoCookieSession(SessionInterface):
    """Every request authenticates with its bearer token; the API has no cookie session.

    SECRET_KEY is set (it signs list cursors), so Flask would otherwise open and
    verify a session cookie on every request.
    """

    def open_session(self, app, request):
        return None  # Flask then uses a NullSession, which it never saves

    def save_session(self, app, session, response):
        pass


def init_app(app):
    app.session_interface = NoCookieSession()
    # TRUSTED_PROXY_COUNT: how many proxies (load balancer, ingress...) stand in
    # front of the app and append to X-Forwarded-*. Only then are those headers
    # believed: the client's address, and https in Location URLs.
    proxies = setting(app, "TRUSTED_PROXY_COUNT", 0, integer)
    if proxies:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    app.before_request(start_request)
    app.after_request(finish_response)
