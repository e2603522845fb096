"""The six task endpoints: bodies, status codes, envelopes, completion rules, rows"""

import uuid
from urllib.parse import quote

import pytest
from helpers import TASK_FIELDS, TIME, UUID, count, create, iso, row, rows

READ_ONLY = {
    "id": "00000000-0000-4000-8000-000000000000",
    "user_id": "mallory",
    "created_at": "2000-01-01T00:00:00.000000Z",
    "updated_at": "2000-01-01T00:00:00.000000Z",
    "completed_at": "2000-01-01T00:00:00.000000Z",
}


def url(task, suffix=""):
    return f"/api/alice/tasks/{task['id']}{suffix}"


# POST


def test_create_returns_the_task_with_location_and_envelope(app, alice):
    response = alice.post("/api/alice/tasks", json={"title": "  Buy milk  "})

    assert response.status_code == 201
    assert response.content_type == "application/json"
    assert set(response.json) == {"data", "meta"}
    task = response.json["data"]
    assert set(task) == TASK_FIELDS
    assert UUID.match(task["id"])
    assert task["user_id"] == "alice"
    assert task["title"] == "Buy milk"
    assert task["description"] is None
    assert task["is_completed"] is False
    assert task["completed_at"] is None
    assert TIME.match(task["created_at"]) and task["created_at"] == task["updated_at"]
    assert response.headers["Location"] == f"http://localhost/api/alice/tasks/{task['id']}"
    meta = response.json["meta"]
    assert set(meta) == {"timestamp", "request_id"}
    assert TIME.match(meta["timestamp"])
    assert meta["request_id"] == response.headers["X-Request-ID"]
    stored = row(app, task["id"])
    assert stored["user_id"] == "alice"
    assert stored["title"] == "Buy milk"
    assert stored["title_lower"] == "buy milk"
    assert stored["is_completed"] is False and stored["completed_at"] is None


def test_location_answers_with_the_created_task(alice):
    response = alice.post("/api/alice/tasks", json={"title": "Buy milk"})

    again = alice.get(response.headers["Location"])

    assert again.status_code == 200
    assert again.json["data"] == response.json["data"]


def test_create_completed_sets_completed_at(app, alice):
    task = create(alice, is_completed=True, description="2 litres")

    assert task["is_completed"] is True
    assert TIME.match(task["completed_at"])
    assert task["completed_at"] == task["created_at"]
    assert task["description"] == "2 litres"
    assert iso(row(app, task["id"])["completed_at"]) == task["completed_at"]


def test_create_ignores_read_only_fields(app, alice):
    task = create(alice, title="Sent back", **READ_ONLY)

    assert task["id"] != READ_ONLY["id"] and UUID.match(task["id"])
    assert task["user_id"] == "alice"
    stored = row(app, task["id"])
    assert task["created_at"] == iso(stored["created_at"]) > READ_ONLY["created_at"]
    assert task["updated_at"] == task["created_at"]
    assert task["completed_at"] is None  # is_completed defaults to false
    assert [r["user_id"] for r in rows(app)] == ["alice"]


def test_create_completed_with_a_null_completed_at_still_sets_it(alice):
    task = create(alice, is_completed=True, completed_at=None)

    assert TIME.match(task["completed_at"])
    assert task["completed_at"] == task["created_at"]


# GET one


def test_get_returns_the_task(alice):
    task = create(alice)

    response = alice.get(url(task))

    assert response.status_code == 200
    assert response.json["data"] == task
    assert set(response.json["meta"]) == {"timestamp", "request_id"}


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_unknown_and_non_uuid_task_ids_are_404(alice, method):
    for task_id in (str(uuid.uuid4()), "not-a-uuid", "1", uuid.uuid4().hex + "0"):
        suffix = "/complete" if method == "patch" else ""
        response = getattr(alice, method)(
            f"/api/alice/tasks/{task_id}{suffix}",
            json={"title": "x"} if method == "put" else None,
        )
        assert response.status_code == 404, (task_id, response.json)
        error = response.json["error"]
        assert error["code"] == "NOT_FOUND"
        assert error["message"] == "Task not found."
        assert error["details"] is None


def test_another_users_task_is_404_through_ones_own_url(app, alice, bob):
    task = create(alice)
    before = row(app, task["id"])

    for method in ("get", "put", "delete"):
        response = getattr(bob, method)(f"/api/bob/tasks/{task['id']}", json={"title": "x"})
        assert response.status_code == 404, method
        assert response.json["error"]["code"] == "NOT_FOUND"
    patched = bob.patch(f"/api/bob/tasks/{task['id']}/complete")
    assert patched.status_code == 404
    assert patched.json["error"]["code"] == "NOT_FOUND"
    assert row(app, task["id"]) == before


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_spellings_of_a_tasks_uuid_are_404(app, alice, method):
    task = create(alice)
    before = row(app, task["id"])
    hex_digits = uuid.UUID(task["id"]).hex
    spellings = (
        "{" + task["id"] + "}",
        "urn:uuid:" + task["id"],
        hex_digits,
        "-".join((hex_digits[:8], hex_digits[8:16], hex_digits[16:20], hex_digits[20:])),
        task["id"] + "\n",
        " " + task["id"],
    )
    suffix = "/complete" if method == "patch" else ""

    for task_id in spellings:
        response = getattr(alice, method)(
            f"/api/alice/tasks/{quote(task_id)}{suffix}",
            json={"title": "x"} if method == "put" else None,
        )
        assert response.status_code == 404, (task_id, response.json)
        assert response.json["error"]["code"] == "NOT_FOUND"
    assert row(app, task["id"]) == before


def test_uppercase_uuid_finds_the_task(alice):
    task = create(alice)

    response = alice.get(f"/api/alice/tasks/{task['id'].upper()}")

    assert response.status_code == 200
    assert response.json["data"]["id"] == task["id"]


# PUT


def test_put_keeps_omitted_fields_and_null_clears_description(app, alice):
    task = create(alice, description="keep me", is_completed=True)

    response = alice.put(url(task), json={"title": "  Renamed "})
    assert response.status_code == 200
    kept = response.json["data"]
    assert kept["title"] == "Renamed"
    assert kept["description"] == "keep me"
    assert kept["is_completed"] is True
    assert kept["completed_at"] == task["completed_at"]
    assert kept["created_at"] == task["created_at"]
    assert kept["updated_at"] > task["updated_at"]

    cleared = alice.put(
        url(task), json={"title": "Renamed", "description": None, "is_completed": False}
    ).json["data"]
    assert cleared["description"] is None
    assert cleared["is_completed"] is False
    assert cleared["completed_at"] is None
    stored = row(app, task["id"])
    assert stored["description"] is None
    assert stored["title_lower"] == "renamed"
    assert stored["completed_at"] is None


def test_put_sets_completed_at_when_it_completes_and_keeps_it_after(alice):
    task = create(alice)

    completed = alice.put(url(task), json={"title": "Buy milk", "is_completed": True}).json["data"]
    assert completed["is_completed"] is True
    assert completed["completed_at"] == completed["updated_at"]

    again = alice.put(url(task), json={"title": "Other", "is_completed": True}).json["data"]
    assert again["completed_at"] == completed["completed_at"]
    assert again["updated_at"] > completed["updated_at"]


def test_put_requires_title(app, alice):
    task = create(alice)

    response = alice.put(url(task), json={"description": "no title"})

    assert response.status_code == 400
    assert response.json["error"]["details"] == {
        "json": {"title": ["Missing data for required field."]}
    }
    assert row(app, task["id"])["description"] is None


def test_put_that_changes_nothing_keeps_updated_at(alice):
    task = create(alice, description="d")

    same = alice.put(url(task), json={"title": "Buy milk", "description": "d"}).json["data"]

    assert same == task


@pytest.mark.parametrize("is_completed", [True, False])
def test_complete_ignores_read_only_fields(app, alice, is_completed):
    task = create(alice)
    completed = alice.patch(url(task, "/complete")).json["data"]

    response = alice.patch(url(task, "/complete"), json={**READ_ONLY, "is_completed": is_completed})

    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert (data["id"], data["user_id"]) == (task["id"], "alice")
    assert data["created_at"] == task["created_at"]
    assert data["is_completed"] is is_completed
    # completing again keeps the first completed_at; reopening clears it
    assert data["completed_at"] == (completed["completed_at"] if is_completed else None)
    assert row(app, task["id"])["is_completed"] is is_completed


def test_put_ignores_read_only_fields(app, alice):
    task = create(alice)
    before = row(app, task["id"])

    response = alice.put(url(task), json={**READ_ONLY, "title": "Renamed"})

    assert response.status_code == 200
    data = response.json["data"]
    assert data["id"] == task["id"]
    assert data["user_id"] == "alice"
    assert data["created_at"] == task["created_at"]
    assert data["completed_at"] is None
    after = row(app, task["id"])
    assert data["updated_at"] == iso(after["updated_at"]) > task["updated_at"]
    assert after["created_at"] == before["created_at"]
    assert after["completed_at"] is None
    assert [r["id"] for r in rows(app)] == [uuid.UUID(task["id"])]


@pytest.mark.parametrize("is_completed", [False, True])
def test_a_task_sent_back_as_received_is_accepted_by_put(alice, is_completed):
    task = create(alice, is_completed=is_completed)

    response = alice.put(url(task), json=task)

    assert response.status_code == 200
    assert response.json["data"] == task


# PATCH /complete


def test_patch_without_body_completes(app, alice):
    task = create(alice)

    response = alice.patch(url(task, "/complete"))

    assert response.status_code == 200
    data = response.json["data"]
    assert data["is_completed"] is True
    assert TIME.match(data["completed_at"])
    assert data["completed_at"] == data["updated_at"]
    stored = row(app, task["id"])
    assert stored["is_completed"] is True
    assert iso(stored["completed_at"]) == data["completed_at"]


def test_patch_with_empty_object_completes(alice):
    task = create(alice)

    response = alice.patch(url(task, "/complete"), json={})

    assert response.status_code == 200
    data = response.json["data"]
    assert data["is_completed"] is True
    assert TIME.match(data["completed_at"]) and data["completed_at"] == data["updated_at"]


def test_patch_with_true_completes(alice):
    task = create(alice)

    response = alice.patch(url(task, "/complete"), json={"is_completed": True})

    assert response.status_code == 200
    data = response.json["data"]
    assert data["is_completed"] is True
    assert TIME.match(data["completed_at"]) and data["completed_at"] == data["updated_at"]


def test_patch_complete_is_idempotent(alice):
    task = create(alice)
    first = alice.patch(url(task, "/complete")).json["data"]

    for body in (None, {}, {"is_completed": True}):
        again = alice.patch(url(task, "/complete"), json=body)
        assert again.status_code == 200
        assert again.json["data"] == first


def test_patch_false_reopens_and_completing_again_sets_a_new_completed_at(app, alice):
    task = create(alice, is_completed=True)

    reopened = alice.patch(url(task, "/complete"), json={"is_completed": False}).json["data"]
    assert reopened["is_completed"] is False
    assert reopened["completed_at"] is None
    assert row(app, task["id"])["completed_at"] is None

    pending_again = alice.patch(url(task, "/complete"), json={"is_completed": False})
    assert pending_again.json["data"] == reopened

    completed = alice.patch(url(task, "/complete")).json["data"]
    assert completed["completed_at"] > task["completed_at"]


def test_patch_ignores_nothing_but_is_completed(alice):
    task = create(alice)

    response = alice.patch(url(task, "/complete"), json={"title": "no"})

    assert response.status_code == 400
    assert response.json["error"]["details"] == {"json": {"title": ["Unknown field."]}}


# DELETE


def test_delete_returns_204_with_empty_body_then_404(app, alice):
    task = create(alice)
    other = create(alice, title="stays")

    response = alice.delete(url(task))

    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    assert [str(r["id"]) for r in rows(app)] == [other["id"]]
    missing = alice.get(url(task))
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "NOT_FOUND"
    assert alice.delete(url(task)).status_code == 404
    assert count(app) == 1
