"""Pooled connections that died are replaced before use: a database restart costs no 503"""

import pytest
import sqlalchemy as sa

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
def test_a_pooled_connection_that_died_is_replaced_before_use(app, alice):
    assert alice.get("/api/alice/tasks").status_code == 200

    terminate_other_sessions(app)

    response = alice.get("/api/alice/tasks")
    assert response.status_code == 200
    assert response.json["meta"]["total"] == 0
