"""OWASP API1, broken object-level authorisation: no user reaches another's tasks

Another user's task through one's own URL is 404 (existence is never revealed);
another user's URL is 403 whatever the task; a list never shows another's tasks.
"""

import uuid

import pytest

from tests.security.conftest import OPERATION_IDS, operations, send

TASK_OPERATIONS = ["get", "put", "delete", "complete"]


def _snapshot(client, user, task_id):
    response = client.get(f"/api/{user}/tasks/{task_id}")
    assert response.status_code == 200
    return response.json["data"], response.headers["ETag"]


@pytest.mark.parametrize("index", range(2, 6), ids=TASK_OPERATIONS)
def test_another_users_task_through_ones_own_url_is_404(alice, bob, create, index):
    bobs = create(bob, "bob", "bob's secret plan")
    before = _snapshot(bob, "bob", bobs["id"])

    method, path, body = operations("alice", bobs["id"])[index]
    response = send(alice, method, path, body)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "NOT_FOUND"
    assert "ETag" not in response.headers
    assert _snapshot(bob, "bob", bobs["id"]) == before  # untouched


@pytest.mark.parametrize("index", range(2, 6), ids=TASK_OPERATIONS)
def test_another_users_task_and_a_missing_one_answer_alike(alice, bob, create, index):
    bobs = create(bob, "bob")

    method, path, body = operations("alice", bobs["id"])[index]
    theirs = send(alice, method, path, body)
    method, path, body = operations("alice", uuid.uuid4())[index]
    missing = send(alice, method, path, body)

    def shape(response):
        error = dict(response.json["error"], request_id=None, timestamp=None)
        headers = {k: v for k, v in response.headers if k not in ("X-Request-ID",)}
        return response.status_code, error, headers

    assert theirs.status_code == 404
    assert shape(theirs) == shape(missing)


@pytest.mark.parametrize("index", range(6), ids=OPERATION_IDS)
@pytest.mark.parametrize("target", ["their task", "no such task"])
def test_another_users_url_is_403_whatever_the_task(alice, bob, create, index, target):
    bobs = create(bob, "bob")
    task_id = bobs["id"] if target == "their task" else str(uuid.uuid4())
    before = bob.get("/api/bob/tasks").json["data"]

    method, path, body = operations("bob", task_id)[index]
    response = send(alice, method, path, body)

    assert response.status_code == 403
    assert response.json["error"]["code"] == "FORBIDDEN"
    assert "bob" not in response.get_data(as_text=True)
    assert bob.get("/api/bob/tasks").json["data"] == before


def test_user_ids_are_compared_exactly(client_for, create):
    alice = client_for("alice")
    create(alice, "alice")
    for lookalike in ("Alice", "alice ", "alice%20", "ALICE", "al%69ce2"):
        response = alice.get(f"/api/{lookalike}/tasks")
        assert response.status_code == 403, lookalike


def test_lists_never_show_another_users_tasks(alice, bob, create):
    for n in range(3):
        create(alice, "alice", f"shared word alice {n}", is_completed=n == 0)
        create(bob, "bob", f"shared word bob {n}", is_completed=n == 0)
    mine = [f"shared word alice {n}" for n in range(3)]
    queries = {  # query: (alice's titles it lists, in order; total), bob's match too
        "": (mine[::-1], 3),
        "?status=completed": (mine[:1], 1),
        "?status=pending": (mine[:0:-1], 2),
        "?q=shared": (mine[::-1], 3),
        "?q=bob": ([], 0),
        "?sort=title": (mine, 3),
        "?sort=-updated_at&limit=1": (mine[-1:], 3),
    }
    for query, (titles, total) in queries.items():
        page = alice.get(f"/api/alice/tasks{query}").json
        assert [task["title"] for task in page["data"]] == titles, query
        assert [task["user_id"] for task in page["data"]] == ["alice"] * len(titles), query
        assert page["meta"]["total"] == total, query

    # walk every page through the cursors: still only alice's, and all of them
    seen, url = [], "/api/alice/tasks?limit=1"
    while url:
        page = alice.get(url).json
        seen += page["data"]
        assert page["meta"]["total"] == 3
        cursor = page["meta"]["next_cursor"]
        url = f"/api/alice/tasks?limit=1&cursor={cursor}" if cursor else None
    assert len(seen) == 3 and {task["user_id"] for task in seen} == {"alice"}


def test_a_cursor_from_another_user_reveals_nothing(alice, bob, create):
    create(alice, "alice", "alice 0")
    for n in range(3):
        create(bob, "bob", f"bob {n}")
    create(alice, "alice", "alice 1")
    bobs_cursor = bob.get("/api/bob/tasks?limit=1").json["meta"]["next_cursor"]

    response = alice.get(f"/api/alice/tasks?limit=1&cursor={bobs_cursor}")

    # a cursor only positions a page (it names no user): the page is still alice's,
    # her tasks older than bob's newest
    assert response.status_code == 200
    assert [(t["user_id"], t["title"]) for t in response.json["data"]] == [("alice", "alice 0")]
    assert response.json["meta"]["total"] == 2
    assert response.json["meta"]["next_cursor"] is None
