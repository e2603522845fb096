"""Pooled connections that die are replaced: idle ones before use, busy ones after one 503"""

import pytest
import sqlalchemy as sa

from todo import database
from todo.extensions import db


def terminate_other_sessions(app):
    """Kill every server session of the app's database, as a restart or a proxy would."""
    with app.app_context():
        url = db.engine.url
    killer = sa.create_engine(url)
    with killer.connect() as connection:
        connection.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    killer.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_idle_dead_connection_is_replaced_before_use(app, alice, monkeypatch):
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0)
    assert alice.get("/api/alice/tasks").status_code == 200

    terminate_other_sessions(app)

    assert alice.get("/api/alice/tasks").status_code == 200


@pytest.mark.parametrize("backend", ["postgresql"])
def test_busy_dead_connection_costs_one_503_then_the_pool_recovers(app, alice, monkeypatch):
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 3600)
    assert alice.get("/api/alice/tasks").status_code == 200

    terminate_other_sessions(app)

    failed = alice.get("/api/alice/tasks")
    assert failed.status_code == 503
    assert failed.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert failed.headers["Retry-After"] == "5"
    assert alice.get("/api/alice/tasks").status_code == 200
