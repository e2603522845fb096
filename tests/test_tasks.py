"""The six task endpoints: bodies, status codes, envelopes and completion rules"""

import re
import uuid

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
TASK_FIELDS = {
    "id", "user_id", "title", "description", "is_completed",
    "completed_at", "created_at", "updated_at",
}


def create(client, user="alice", **body):
    response = client.post(f"/api/{user}/tasks", json={"title": "Buy milk", **body})
    assert response.status_code == 201, response.json
    return response.json["data"]


def test_create_returns_the_task_with_location_and_envelope(alice):
    response = alice.post("/api/alice/tasks", json={"title": "  Buy milk  "})

    assert response.status_code == 201
    task = response.json["data"]
    assert set(task) == TASK_FIELDS
    assert uuid.UUID(task["id"])
    assert task["user_id"] == "alice"
    assert task["title"] == "Buy milk"
    assert task["description"] is None
    assert task["is_completed"] is False
    assert task["completed_at"] is None
    assert TIME.match(task["created_at"]) and task["created_at"] == task["updated_at"]
    assert response.headers["Location"] == f"http://localhost/api/alice/tasks/{task['id']}"
    meta = response.json["meta"]
    assert TIME.match(meta["timestamp"])
    assert meta["request_id"] == response.headers["X-Request-ID"]


def test_create_completed_sets_completed_at(alice):
    task = create(alice, is_completed=True, description="2 litres")

    assert task["is_completed"] is True
    assert TIME.match(task["completed_at"])
    assert task["description"] == "2 litres"


def test_get_returns_the_task(alice):
    task = create(alice)

    response = alice.get(f"/api/alice/tasks/{task['id']}")

    assert response.status_code == 200
    assert response.json["data"] == task


def test_put_keeps_omitted_fields_and_null_clears_description(alice):
    task = create(alice, description="keep me", is_completed=True)

    kept = alice.put(f"/api/alice/tasks/{task['id']}", json={"title": "Renamed"}).json["data"]
    assert kept["title"] == "Renamed"
    assert kept["description"] == "keep me"
    assert kept["is_completed"] is True
    assert kept["completed_at"] == task["completed_at"]
    assert kept["updated_at"] > task["updated_at"]

    cleared = alice.put(
        f"/api/alice/tasks/{task['id']}",
        json={"title": "Renamed", "description": None, "is_completed": False},
    ).json["data"]
    assert cleared["description"] is None
    assert cleared["is_completed"] is False
    assert cleared["completed_at"] is None


def test_patch_complete_is_idempotent_and_reopens(alice):
    task = create(alice)
    url = f"/api/alice/tasks/{task['id']}/complete"

    first = alice.patch(url)
    assert first.status_code == 200
    completed_at = first.json["data"]["completed_at"]
    assert first.json["data"]["is_completed"] is True and TIME.match(completed_at)

    again = alice.patch(url, json={})
    assert again.json["data"]["completed_at"] == completed_at

    reopened = alice.patch(url, json={"is_completed": False})
    assert reopened.json["data"]["is_completed"] is False
    assert reopened.json["data"]["completed_at"] is None


def test_delete_returns_204_with_empty_body_then_404(alice):
    task = create(alice)

    response = alice.delete(f"/api/alice/tasks/{task['id']}")

    assert response.status_code == 204
    assert response.data == b""
    missing = alice.get(f"/api/alice/tasks/{task['id']}")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "NOT_FOUND"


def test_another_users_task_is_404_through_ones_own_url(alice, bob):
    task = create(alice)

    for method in ("get", "put", "delete"):
        response = getattr(bob, method)(f"/api/bob/tasks/{task['id']}", json={"title": "x"})
        assert response.status_code == 404, method
    assert bob.patch(f"/api/bob/tasks/{task['id']}/complete").status_code == 404
    assert alice.get(f"/api/alice/tasks/{task['id']}").json["data"]["title"] == "Buy milk"


def test_non_uuid_task_id_is_404(alice):
    assert alice.get("/api/alice/tasks/not-a-uuid").status_code == 404
