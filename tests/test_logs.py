"""Structured logs: one JSON line per request, errors with their request id, no secrets"""

import io
import json
import logging

import pytest
import sqlalchemy as sa
from conftest import TEST_SECRET, make_token

from todo.extensions import db


@pytest.fixture
def log_output():
    """What the app's log handler writes, as text (the handler is swapped to a buffer)."""
    buffer = io.StringIO()

    def capture():
        logging.getLogger("todo").handlers[0].setStream(buffer)
        return buffer

    return capture


def lines(buffer):
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


def boom_app(make_app, **overrides):
    # TESTING would re-raise the exception in the test instead of answering 500.
    app = make_app(PROPAGATE_EXCEPTIONS=False, **overrides)

    @app.get("/boom")
    def boom():
        raise RuntimeError("exploded")

    return app


def test_one_json_line_per_request_with_route_template_user_and_request_id(app, log_output):
    buffer = log_output()
    client = app.test_client()
    token = make_token("alice")

    response = client.post(
        "/api/alice/tasks?q=private",
        json={"title": "Secret title", "description": "body text"},
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-1"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )

    assert response.status_code == 201
    (entry,) = lines(buffer)
    assert entry["logger"] == "todo.access"
    assert entry["level"] == "INFO"
    assert entry["request_id"] == "req-1"
    assert entry["method"] == "POST"
    assert entry["route"] == "/api/<user_id>/tasks"
    assert entry["status"] == 201
    assert entry["error_code"] is None
    assert entry["user_id"] == "alice"
    assert entry["remote_addr"] == "203.0.113.9"
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    text = buffer.getvalue()
    for secret in (token, "Secret title", "body text", "private", TEST_SECRET):
        assert secret not in text


def test_an_error_line_carries_its_code_and_request_id(app, log_output):
    buffer = log_output()
    token = make_token("alice", secret="another-secret-that-is-at-least-32-bytes")

    response = app.test_client().get(
        "/api/alice/tasks", headers={"Authorization": f"Bearer {token}"}
    )

    (entry,) = lines(buffer)
    assert response.status_code == entry["status"] == 401
    assert entry["error_code"] == "INVALID_TOKEN"
    assert entry["request_id"] == response.json["error"]["request_id"]
    assert entry["user_id"] is None
    assert token not in buffer.getvalue()


def test_unknown_paths_log_no_route_template(app, log_output):
    buffer = log_output()

    response = app.test_client().get("/no/such/path")

    (entry,) = lines(buffer)
    assert entry["route"] is None
    assert (entry["status"], entry["error_code"]) == (404, "NOT_FOUND")
    assert entry["request_id"] == response.headers["X-Request-ID"]


def test_a_500_has_its_stack_trace_in_the_log_only(make_app, log_output):
    app = boom_app(make_app)
    buffer = log_output()

    response = app.test_client().get("/boom", headers={"X-Request-ID": "req-500"})

    assert response.status_code == 500
    assert response.json["error"]["code"] == "INTERNAL_ERROR"
    assert "exploded" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    exception, access = lines(buffer)
    assert exception["level"] == "ERROR"
    assert exception["request_id"] == "req-500"
    assert "Traceback" in exception["exception"]
    assert "RuntimeError: exploded" in exception["exception"]
    assert access["status"] == 500
    assert access["level"] == "ERROR"
    assert access["request_id"] == "req-500"


def test_log_level_is_respected(make_app, log_output):
    app = boom_app(make_app, LOG_LEVEL="WARNING")
    buffer = log_output()
    client = app.test_client()

    client.get("/healthz")
    client.get("/boom")

    levels = [entry["level"] for entry in lines(buffer)]
    assert levels == ["ERROR", "ERROR"]  # the exception and the 500's access line; no INFO


def test_text_format_for_local_development(make_app, log_output):
    app = make_app(LOG_FORMAT="text")
    buffer = log_output()

    app.test_client().get("/healthz", headers={"X-Request-ID": "req-text"})

    (line,) = buffer.getvalue().splitlines()
    assert line.endswith("INFO todo.access [req-text] GET /healthz 200")


def test_a_database_error_logs_no_parameter_values(make_app, log_output, backend):
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    users_text = "users-" + "text"  # not literally on the line that the stack trace quotes

    @app.get("/bad-query")
    def bad_query():
        db.session.execute(sa.text("SELECT * FROM no_such_table WHERE x = :x"), {"x": users_text})

    buffer = log_output()
    response = app.test_client().get("/bad-query")

    text = buffer.getvalue()
    logged = lines(buffer)
    # A bug, not an outage, on both: sqlite3 calls it an OperationalError
    assert response.status_code == 500
    assert [entry["level"] for entry in logged] == ["ERROR", "ERROR"]
    assert {
        "postgresql": 'psycopg.errors.UndefinedTable: relation "no_such_table" does not exist',
        "sqlite": "sqlite3.OperationalError: no such table: no_such_table",
    }[backend] in logged[0]["exception"]
    assert logged[-1]["status"] == 500
    assert "users-text" not in text


def test_behind_a_trusted_proxy_the_log_shows_the_client_address(make_app, log_output):
    app = make_app(TRUSTED_PROXY_COUNT=1)
    buffer = log_output()

    app.test_client().get(
        "/healthz",
        headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.7"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},  # the proxy
    )

    (entry,) = lines(buffer)
    assert entry["remote_addr"] == "198.51.100.7"
