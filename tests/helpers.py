"""Helpers shared by the tests: creating tasks over HTTP or directly, reading rows"""

import os
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from todo import tasks as service
from todo.extensions import db
from todo.models import Task

try:  # Row-level security (PostgreSQL), where the app has it, hides rows outside a request.
    from todo.rls import acting_as
    from todo.rls import bypass as every_row
except ImportError:
    from contextlib import nullcontext as every_row

    def acting_as(user_id):
        return every_row()


TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TASK_FIELDS = {
    "id",
    "user_id",
    "title",
    "description",
    "is_completed",
    "completed_at",
    "created_at",
    "updated_at",
}
EPOCH = datetime(2026, 1, 14, 10, 0, 0, 123456, tzinfo=UTC)


def skip_unless_required(switch, reason):
    """Skip the test for `reason` (something it needs is missing), unless the
    environment sets `switch`: CI sets REQUIRE_POSTGRESQL, REQUIRE_REDIS,
    REQUIRE_PGBOUNCER and REQUIRE_CHROMIUM, so that a missing service fails the run."""
    if os.environ.get(switch):
        pytest.fail(f"{switch} is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def create(client, user="alice", **body):
    """POST a task (title "Buy milk" unless given) and return its data."""
    response = client.post(f"/api/{user}/tasks", json={"title": "Buy milk", **body})
    assert response.status_code == 201, response.json
    return response.json["data"]


def insert(
    app, user="alice", *, titles=("task",), created_at=None, step=timedelta(0), completed=False
):
    """Insert tasks directly (several may share one created_at); returns their ids."""
    ids = []
    with app.app_context(), every_row():
        for n, title in enumerate(titles):
            moment = (created_at or EPOCH) + n * step
            task = service.new_task(user, title, None, completed, now=moment)
            db.session.add(task)
            ids.append(str(task.id))
        db.session.commit()
    return ids


def rows(app, user=None):
    """The tasks table as plain dicts (every column), for one user or all."""
    with app.app_context(), every_row():
        statement = sa.select(Task.__table__)
        if user is not None:
            statement = statement.where(Task.user_id == user)
        return [dict(row._mapping) for row in db.session.execute(statement)]


def count(app):
    with app.app_context(), every_row():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Task))


def row(app, task_id):
    with app.app_context(), every_row():
        result = db.session.execute(
            sa.select(Task.__table__).where(Task.id == uuid.UUID(task_id))
        ).one()
        return dict(result._mapping)


def iso(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
