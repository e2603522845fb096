"""OWASP API3, broken object property-level authorisation: a body never sets the
owner, the id, or the server's timestamps, and answers show only the eight fields"""

from datetime import UTC, datetime

import pytest

from tests.helpers import iso

TASK_FIELDS = {
    "id", "user_id", "title", "description", "is_completed",
    "completed_at", "created_at", "updated_at",
}  # fmt: skip
FORGED = {
    "id": "00000000-0000-4000-8000-000000000000",
    "user_id": "bob",
    "created_at": "2000-01-01T00:00:00.000000Z",
    "updated_at": "2000-01-01T00:00:00.000000Z",
    "completed_at": "2000-01-01T00:00:00.000000Z",
}


def now():
    return iso(datetime.now(UTC))


def test_create_ignores_owner_id_and_timestamps(alice, bob):
    before = now()
    response = alice.post("/api/alice/tasks", json={"title": "mine", **FORGED})
    after = now()

    assert response.status_code == 201
    task = response.json["data"]
    assert set(task) == TASK_FIELDS
    assert task["user_id"] == "alice"
    assert task["id"] != FORGED["id"]
    assert before <= task["created_at"] <= after  # the server's clock, not the body's
    assert task["updated_at"] == task["created_at"]
    assert task["completed_at"] is None and task["is_completed"] is False
    assert bob.get("/api/bob/tasks").json["meta"]["total"] == 0
    assert alice.get(f"/api/alice/tasks/{FORGED['id']}").status_code == 404


def test_put_ignores_owner_id_and_timestamps(alice, bob, create):
    task = create(alice, "alice", "before")

    before = now()
    response = alice.put(
        f"/api/alice/tasks/{task['id']}",
        json={"title": "after", "is_completed": True, **FORGED},
    )
    after = now()

    assert response.status_code == 200
    updated = response.json["data"]
    assert updated["id"] == task["id"] and updated["user_id"] == "alice"
    assert updated["created_at"] == task["created_at"]
    assert before <= updated["updated_at"] <= after
    assert updated["completed_at"] == updated["updated_at"]  # set by the server, not the body
    assert bob.get("/api/bob/tasks").json["meta"]["total"] == 0


def test_sending_back_a_received_task_changes_only_what_a_client_may(alice, create):
    task = create(alice, "alice", "round trip")
    response = alice.put(f"/api/alice/tasks/{task['id']}", json=task)
    assert response.status_code == 200
    assert response.json["data"] == task  # nothing changed, not even updated_at


def test_complete_refuses_unknown_fields(alice, create):
    task = create(alice, "alice")
    response = alice.patch(f"/api/alice/tasks/{task['id']}/complete", json={"is_admin": True})
    assert response.status_code == 400
    assert response.json["error"]["details"] == {"json": {"is_admin": ["Unknown field."]}}
    assert alice.get(f"/api/alice/tasks/{task['id']}").json["data"] == task


@pytest.mark.parametrize(
    "body", [{"user_id": "bob"}, {"completed_at": "2000-01-01T00:00:00.000000Z"}]
)
def test_complete_ignores_the_read_only_fields_it_is_sent(alice, bob, create, body):
    # The contract: every body accepts and ignores a task's read-only fields.
    task = create(alice, "alice")
    before = now()
    response = alice.patch(f"/api/alice/tasks/{task['id']}/complete", json=body)
    after = now()
    assert response.status_code == 200
    completed = response.json["data"]
    assert (completed["id"], completed["user_id"]) == (task["id"], "alice")
    assert completed["is_completed"] is True
    assert before <= completed["completed_at"] <= after  # set by the server, not the body
    assert completed["completed_at"] == completed["updated_at"]
    assert bob.get("/api/bob/tasks").json["meta"]["total"] == 0


@pytest.mark.parametrize("field", ["is_admin", "owner", "role", "version"])
def test_unknown_properties_are_refused(alice, create, field):
    task = create(alice, "alice")
    created = alice.post("/api/alice/tasks", json={"title": "x", field: "bob"})
    updated = alice.put(f"/api/alice/tasks/{task['id']}", json={"title": "x", field: 1})
    assert (created.status_code, updated.status_code) == (400, 400)
    assert created.json["error"]["details"] == {"json": {field: ["Unknown field."]}}
    assert updated.json["error"]["details"] == {"json": {field: ["Unknown field."]}}
    assert alice.get(f"/api/alice/tasks/{task['id']}").json["data"] == task
    assert alice.get("/api/alice/tasks").json["meta"]["total"] == 1


def test_answers_show_exactly_the_eight_fields(alice, create):
    task = create(alice, "alice", is_completed=True)
    listed = alice.get("/api/alice/tasks").json["data"]
    single = alice.get(f"/api/alice/tasks/{task['id']}").json["data"]
    assert [set(t) for t in listed] == [TASK_FIELDS]
    assert set(single) == TASK_FIELDS
