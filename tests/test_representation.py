"""One task, three encoders: TaskSchema (the docs), task_json (Python) and the
PostgreSQL list encoder must agree exactly, whatever the text holds"""

import json
from datetime import UTC, datetime

import pytest

from todo import rls, tasks
from todo.envelope import COMPACT, encode_json
from todo.extensions import db
from todo.models import Task
from todo.schemas import TaskSchema, task_json

TRICKY_TITLES = [
    'Quotes " and \\ backslashes',
    "Tabs\tand\nnewlines\r and \x01 control",
    "Unicode: Ärger, 東京, emoji 🚀, RTL שלום",
    "</script><script>alert(1)</script>",
    "'; DROP TABLE tasks; --",
    "   spaces inside   kept  ",
]


@pytest.fixture
def tricky_tasks(app):
    with app.app_context(), rls.acting_as("alice"):
        created = [
            tasks.create("alice", title, description=title[::-1], is_completed=i % 2 == 0)
            for i, title in enumerate(TRICKY_TITLES)
        ]
        # A time on an exact second: every encoder must still print six digits.
        on_the_second = tasks.new_task("alice", "On the second")
        on_the_second.created_at = on_the_second.updated_at = datetime(2026, 1, 14, 10, tzinfo=UTC)
        db.session.add(on_the_second)
        db.session.commit()
        return [str(task.id) for task in [*created, on_the_second]]


def test_list_items_equal_single_task_bodies(alice, tricky_tasks):
    listed = alice.get("/api/alice/tasks?limit=1000").json["data"]

    assert sorted(item["id"] for item in listed) == sorted(tricky_tasks)
    for item in listed:
        single = alice.get(f"/api/alice/tasks/{item['id']}").json["data"]
        assert item == single


def test_exact_second_has_six_fractional_digits(alice, tricky_tasks):
    listed = {item["title"]: item for item in alice.get("/api/alice/tasks").json["data"]}

    assert listed["On the second"]["created_at"] == "2026-01-14T10:00:00.000000Z"
    single = alice.get(f"/api/alice/tasks/{listed['On the second']['id']}").json["data"]
    assert single["created_at"] == "2026-01-14T10:00:00.000000Z"


def test_task_json_equals_the_documented_schema(app, tricky_tasks):
    with app.app_context(), rls.acting_as("alice"):
        stored = db.session.scalars(db.select(Task)).all()
        assert sorted(str(task.id) for task in stored) == sorted(tricky_tasks)
        for task in stored:
            assert task_json(task) == TaskSchema().dump(task)


def test_list_body_is_one_valid_json_document(alice, tricky_tasks):
    response = alice.get("/api/alice/tasks")

    assert response.mimetype == "application/json"
    body = json.loads(response.data)
    assert set(body) == {"data", "meta"}
    assert body["meta"]["count"] == len(tricky_tasks) == body["meta"]["total"]


def test_encode_json_writes_what_flasks_provider_writes(app, tricky_tasks):
    """todo.envelope.encode_json replaced Flask's provider for meta and for tasks
    PostgreSQL does not encode: same bytes (compact, ASCII escapes, keys in order)."""
    meta = {"count": 2, "limit": 100, "next_cursor": None, "total": 7, "request_id": "r-1"}
    with app.app_context(), rls.acting_as("alice"):
        documents = [task_json(task) for task in db.session.scalars(db.select(Task))]
        for document in [meta, *documents]:
            assert encode_json(document) == app.json.dumps(document, separators=COMPACT)
    assert '"title":"Unicode: \\u00c4rger' in "".join(map(encode_json, documents))
