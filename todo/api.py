"""Project subclasses of flask-smorest's Api and Blueprint: 400 for bad input, one error
envelope, and the headers of every answer in the OpenAPI document"""

import http
import json
import sqlite3

import apispec
import flask
import flask_smorest
import marshmallow as ma
import sqlalchemy as sa
from flask_smorest.utils import prepare_response
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import Conflict, ServiceUnavailable

from todo.envelope import error_envelope
from todo.extensions import db
from todo.hooks import HSTS, REQUEST_ID
from todo.schemas import ErrorResponseSchema

ERROR_CODES = {
    400: "VALIDATION_ERROR",
    401: "AUTHENTICATION_REQUIRED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    412: "PRECONDITION_FAILED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}

ERROR_MESSAGES = {
    400: "The request is not valid; see details.",
    401: "A valid bearer token is required.",
    403: "This token may not act for that user.",
    404: "Not found.",
    405: "Method not allowed for this resource.",
    409: "The request conflicts with the current state of the resource.",
    412: "The resource has changed since it was read (If-Match).",
    413: "The request body is too large.",
    415: "The request body must be JSON (Content-Type: application/json).",
    429: "Too many requests; retry later.",
    500: "An internal error occurred.",
    503: "The service is temporarily unavailable; retry later.",
}

RETRY_AFTER_SECONDS = "5"

# The OpenAPI document says what todo.hooks.finish_response, handle_http_exception
# and the rate limiter (todo.limits) do to answers, whatever the configuration (one
# document for every deployment; a header that depends on it is not required):
# these header components,
RATE_LIMITED = (
    "Only when rate limiting is enabled (`RATE_LIMIT`), on the answers to requests that "
    "passed authentication and the URL-user check"
)
HEADERS = {
    "X_REQUEST_ID": {
        "description": "This request's id, also in the body (`meta.request_id` or "
        "`error.request_id`) and in the log lines: the request's own `X-Request-ID` "
        "when it matches the pattern, otherwise a new UUID.",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{REQUEST_ID.pattern}$"},
    },
    "CACHE_CONTROL": {
        "description": "No answer of the API may be stored by a cache.",
        "required": True,
        "schema": {"type": "string", "enum": ["no-store"]},
    },
    "X_CONTENT_TYPE_OPTIONS": {
        "description": "Browsers must not guess another type than `Content-Type`.",
        "required": True,
        "schema": {"type": "string", "enum": ["nosniff"]},
    },
    "WWW_AUTHENTICATE": {
        "description": 'The bearer challenge (RFC 6750), with `error="invalid_token"` '
        "when a token was presented.",
        "required": True,
        "schema": {"type": "string", "enum": ["Bearer", 'Bearer error="invalid_token"']},
    },
    "RETRY_AFTER": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer"},
    },
    "STRICT_TRANSPORT_SECURITY": {
        "description": "Only when the server runs with `ENVIRONMENT=production`, on "
        "every answer: use HTTPS for this host for a year.",
        "required": False,
        "schema": {"type": "string", "enum": [HSTS]},
    },
    "X_RATELIMIT_LIMIT": {
        "description": f"{RATE_LIMITED}: the requests the user may make per window.",
        "required": False,
        "schema": {"type": "integer"},
    },
    "X_RATELIMIT_REMAINING": {
        "description": f"{RATE_LIMITED}: the requests the user has left in this window.",
        "required": False,
        "schema": {"type": "integer"},
    },
    "X_RATELIMIT_RESET": {
        "description": f"{RATE_LIMITED}: when the window resets, in seconds since the Unix epoch.",
        "required": False,
        "schema": {"type": "integer"},
    },
}
# on every answer of every operation (all are under /api, where Cache-Control is set;
# Strict-Transport-Security in production only),
EVERY_ANSWER = {
    "X-Request-ID": "X_REQUEST_ID",
    "Cache-Control": "CACHE_CONTROL",
    "X-Content-Type-Options": "X_CONTENT_TYPE_OPTIONS",
    "Strict-Transport-Security": "STRICT_TRANSPORT_SECURITY",
}
# on the answers of requests the rate limiter counted, which is all of them but the
# authentication hook's 401 and 403 (todo.auth.authenticate runs before the count),
COUNTED_ANSWER = {
    "X-RateLimit-Limit": "X_RATELIMIT_LIMIT",
    "X-RateLimit-Remaining": "X_RATELIMIT_REMAINING",
    "X-RateLimit-Reset": "X_RATELIMIT_RESET",
}
NOT_COUNTED = (401, 403)
# and on these errors too;
ERROR_HEADERS = {
    401: {"WWW-Authenticate": "WWW_AUTHENTICATE"},
    429: {"Retry-After": "RETRY_AFTER"},
    503: {"Retry-After": "RETRY_AFTER"},
}
# the errors any operation may answer, whatever its view;
EVERY_OPERATION_ERRORS = {
    429: "Too Many Requests: only when rate limiting is enabled.",
    503: "Service Unavailable: the database, or the identity provider's keys, cannot "
    "be reached for now.",
}
# and the X-Request-ID a request may carry.
X_REQUEST_ID_PARAMETER = {
    "name": "X-Request-ID",
    "description": "The client's id for this request, the answer's `X-Request-ID` when "
    f"it matches `^{REQUEST_ID.pattern}$`; any other value is replaced by a new UUID.",
    "required": False,
    "schema": {"type": "string"},
}


class Parser(FlaskParser):
    """webargs' parser, answering 400 (not 422) and 415 for a body that is not JSON."""

    DEFAULT_VALIDATION_STATUS = 400
    # webargs ignores unknown query parameters by default; refuse them, as typos
    # (`?stauts=pending`) would otherwise silently list everything.
    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }

    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        limit = req.max_content_length
        if req.content_length is None and limit is not None and len(body) >= limit:
            # A body without Content-Length (chunked) is read up to the limit and cut
            # there by werkzeug, with no error: refuse it if the client sent more.
            if req.environ["wsgi.input"].read(1):
                flask_smorest.abort(413)
        if not body:
            return core.missing
        if not core.is_json(req.mimetype):
            flask_smorest.abort(415)
        try:
            return core.parse_json(body)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError):
            # Nested deeper than the parser goes, or an integer with more digits than
            # Python converts: malformed JSON for us, not a 500.
            raise json.JSONDecodeError("unparseable JSON", "[", 0) from None


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()
    PAGINATION_ARGUMENTS_PARSER = Parser()

    def errors(self, **codes_by_method):
        """Document each method's error answers (in the error envelope): written
        `@blp.errors(get=(401, 404))` between `@blp.route(...)` and the view class."""

        def document(view_class):
            for method, codes in codes_by_method.items():
                view = getattr(view_class, method)
                for code in codes:
                    view = self.alt_response(code, response=http.HTTPStatus(code).name)(view)
                setattr(view_class, method, view)
            return view_class

        return document


def _details(data):
    """Validation messages by location, each location an object of fields."""
    messages = data.get("errors") or data.get("messages")
    if not messages:
        return None
    return {
        location: {"_schema": errors} if isinstance(errors, list) else errors
        for location, errors in messages.items()
    }


class EveryOperation(apispec.BasePlugin):
    """Documents what the app's hooks and error handlers do on every operation, which
    no view's decorators show: the X-Request-ID it takes, the headers on every
    answer, and the errors 429 and 503."""

    def init_spec(self, spec):
        for name, header in HEADERS.items():
            spec.components.header(name, header)
        spec.components.parameter("X_REQUEST_ID", "header", X_REQUEST_ID_PARAMETER)

    def operation_helper(self, path=None, operations=None, **kwargs):
        for operation in operations.values():
            operation.setdefault("parameters", []).append("X_REQUEST_ID")
            responses = operation.setdefault("responses", {})
            for code in EVERY_OPERATION_ERRORS:
                responses.setdefault(code, http.HTTPStatus(code).name)
            for response in responses.values():
                if isinstance(response, dict):  # a named one has them in its component
                    response["headers"] = {
                        **EVERY_ANSWER,
                        **COUNTED_ANSWER,
                        **response.get("headers", {}),
                    }


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorResponseSchema

    def _register_responses(self):
        # Replaces flask-smorest's: one response per HTTP status, registered lazily
        # (listed once an operation names it, as "UNAUTHORIZED"), the errors in the
        # envelope; overriding this is the maintainer's way to change them
        # (flask-smorest PR #223). OpenAPI 3.0 allows nothing beside an operation's $ref,
        # so the headers of these answers must be in the components.
        for status in http.HTTPStatus:
            self._register_response(status.name, status.phrase, status)
        self._register_response(self.DEFAULT_ERROR_RESPONSE_NAME, "Default error response")

    def _register_response(self, name, description, status=None):
        response = {
            "description": EVERY_OPERATION_ERRORS.get(status, description),
            "headers": {
                **EVERY_ANSWER,
                **({} if status in NOT_COUNTED else COUNTED_ANSWER),
                **ERROR_HEADERS.get(status, {}),
            },
        }
        if status is None or status >= 400:
            response["schema"] = self.ERROR_SCHEMA
        prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
        self.spec.components.response(name, response, lazy=True)

    def _register_pagination_header(self):
        # Lists page by cursor in the body (meta.next_cursor), never with
        # flask-smorest's page-number header, whose schema would be listed unused.
        pass

    def _register_error_handlers(self):
        super()._register_error_handlers()
        app = self._app
        app.register_error_handler(sa.exc.OperationalError, self._database_unavailable)
        app.register_error_handler(sa.exc.InterfaceError, self._database_unavailable)
        app.register_error_handler(sa.exc.TimeoutError, self._database_unavailable)
        app.register_error_handler(sa.exc.IntegrityError, self._integrity_error)

    def handle_http_exception(self, error):
        data = getattr(error, "data", None) or {}
        code = error.code or 500
        headers = {
            name: value for name, value in error.get_headers() if name.lower() != "content-type"
        }
        headers.update(data.get("headers") or {})
        if code == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        if code == 503:
            headers.setdefault("Retry-After", RETRY_AFTER_SECONDS)
        message = data.get("message") or ERROR_MESSAGES.get(code)
        if message is None:
            status = _status(code)
            message = status.phrase if status else "Error."
        error_code = data.get("error_code") or ERROR_CODES.get(code) or _code_name(code)
        return error_envelope(error_code, message, _details(data)), code, headers

    def _database_unavailable(self, error):
        db.session.rollback()
        cause = getattr(error, "orig", None) or error
        # sqlite3 reports what is wrong with a statement itself (a table or column that
        # does not exist, bad SQL) as OperationalError too, with SQLite's generic code:
        # a bug, not an outage (busy, cannot open, I/O have codes of their own).
        if getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_ERROR:
            raise error  # a 500, as PostgreSQL's ProgrammingError
        flask.current_app.logger.warning("database unavailable: %s", type(cause).__name__)
        return self.handle_http_exception(ServiceUnavailable())

    def _integrity_error(self, error):
        db.session.rollback()
        return self.handle_http_exception(Conflict())


def _status(code):
    # Not `code in http.HTTPStatus`: before Python 3.12 that raises TypeError for an int.
    try:
        return http.HTTPStatus(code)
    except ValueError:
        return None


def _code_name(code):
    status = _status(code)
    return status.name if status else "ERROR"
