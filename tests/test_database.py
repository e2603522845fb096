"""Pooled connections that died are replaced before use: a database restart costs no 503"""

import psycopg
import pytest
import sqlalchemy as sa

from todo import roundtrip
from todo.extensions import db, drop_if_closed_by_server


def terminate_other_sessions(app, wait_ms=0):
    """Kill every server session of the app's database, as a restart or a proxy would
    (with `wait_ms`, until they are gone)."""
    with app.app_context():
        url = db.engine.url
    killer = sa.create_engine(url)
    with killer.connect() as connection:
        connection.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid, :wait_ms) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ),
            {"wait_ms": wait_ms},
        )
    killer.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_pooled_connection_that_died_is_replaced_before_use(app, alice):
    assert alice.get("/api/alice/tasks").status_code == 200

    terminate_other_sessions(app, wait_ms=5000)  # its goodbye is on the socket

    response = alice.get("/api/alice/tasks")
    assert response.status_code == 200
    assert response.json["meta"]["total"] == 0


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_connection_terminated_just_before_use_is_retried_once(app, alice):
    """The goodbye may still be on its way when the checkout looks at the socket (the
    check is switched off here to stand for that): the server's answer, admin_shutdown,
    says nothing was written, so the statement runs again on a new connection, reads
    and writes alike, and only once."""
    with app.app_context():
        sa.event.remove(db.engine, "checkout", drop_if_closed_by_server)
    for _ in range(3):
        assert alice.get("/api/alice/tasks").status_code == 200
        terminate_other_sessions(app, wait_ms=5000)
        created = alice.post("/api/alice/tasks", json={"title": "once"})
        assert created.status_code == 201, created.json
        terminate_other_sessions(app, wait_ms=5000)
        assert alice.get(f"/api/alice/tasks/{created.json['data']['id']}").status_code == 200

    assert alice.get("/api/alice/tasks").json["meta"]["total"] == 3


@pytest.mark.parametrize(
    ("sql", "sqlstate", "repeated"),
    [
        ("SELECT version FROM tasks", None, True),
        ("UPDATE tasks SET title = 'x'", "57P01", True),  # the server aborted it
        ("UPDATE tasks SET title = 'x'", None, False),  # it may have committed
        ("INSERT INTO tasks VALUES (1)", "08006", False),
    ],
)
def test_only_statements_that_surely_wrote_nothing_are_repeated(sql, sqlstate, repeated):
    error = psycopg.OperationalError("lost")
    if sqlstate:
        error = type("ServerSaid", (psycopg.OperationalError,), {"sqlstate": sqlstate})("lost")
    assert roundtrip._nothing_was_written(sql, error) is repeated
