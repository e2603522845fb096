"""OWASP API8 (injection): SQL metacharacters in titles, searches, ids and user
ids are data, stored and matched literally on every backend"""

from urllib.parse import quote

import pytest

from tests.conftest import make_token

HOSTILE_TITLES = [
    "'; DROP TABLE tasks; --",
    "Robert'); DELETE FROM tasks WHERE ('1'='1",
    '" OR 1=1 --',
    "100% done",
    "snake_case",
    "back\\slash",
    "$1 :param %(x)s ?",
    "/* comment */ UNION SELECT * FROM alembic_version",
]


def test_hostile_titles_are_stored_and_returned_verbatim(alice, create):
    ids = [create(alice, "alice", title)["id"] for title in HOSTILE_TITLES]
    for task_id, title in zip(ids, HOSTILE_TITLES, strict=True):
        assert alice.get(f"/api/alice/tasks/{task_id}").json["data"]["title"] == title
    assert alice.get("/api/alice/tasks").json["meta"]["total"] == len(HOSTILE_TITLES)


@pytest.mark.parametrize(
    ("q", "matches"),
    [("%", 2), ("_", 2), ("\\", 1), ("' OR '1'='1", 0), ("'; drop table", 1), ("%(x)s", 1),
     ("%%", 0), ("*", 1), ("?", 1), ("--", 2)],
)  # fmt: skip
def test_search_metacharacters_match_literally(alice, create, q, matches):
    for title in HOSTILE_TITLES:
        create(alice, "alice", title)
    response = alice.get("/api/alice/tasks", query_string={"q": q})
    assert response.status_code == 200
    literal = [title for title in HOSTILE_TITLES if q.lower() in title.lower()]
    assert len(literal) == matches  # a wildcard would match more
    assert sorted(task["title"] for task in response.json["data"]) == sorted(literal)
    assert response.json["meta"]["total"] == matches


@pytest.mark.parametrize(
    "task_id",
    ["1 OR 1=1", "' OR ''='", "00000000-0000-0000-0000-000000000000' --", "1;DELETE FROM tasks",
     "%", "*"],
)  # fmt: skip
def test_hostile_task_ids_are_404(alice, create, task_id):
    create(alice, "alice")
    for method in ("GET", "PUT", "DELETE"):
        response = alice.open(
            f"/api/alice/tasks/{task_id}",
            method=method,
            json={"title": "x"} if method == "PUT" else None,
        )
        assert response.status_code == 404, (method, task_id)
        assert response.json["error"]["code"] == "NOT_FOUND", (method, task_id)
    assert alice.get("/api/alice/tasks").json["meta"]["total"] == 1


@pytest.mark.parametrize("user", ["' OR '1'='1", "alice' --", "%", "_", "a;DROP TABLE tasks"])
def test_hostile_user_ids_are_opaque_strings(client_for, create, user):
    create(client_for("alice"), "alice")
    client = client_for(user)
    path = f"/api/{quote(user, safe='')}/tasks"
    assert client.get(path).json["meta"]["total"] == 0  # alice's task is not matched
    assert client.post(path, json={"title": "mine"}).json["data"]["user_id"] == user
    assert client.get(path).json["meta"]["total"] == 1
    assert client_for("alice").get("/api/alice/tasks").json["meta"]["total"] == 1


SORTS = "Must be one of: -created_at, created_at, -updated_at, updated_at, title, -title."


@pytest.mark.parametrize(
    ("query", "details"),
    [("sort=title;DROP TABLE tasks", {"sort": [SORTS]}),
     ("status=all' OR '1'='1", {"status": ["Must be one of: all, pending, completed."]}),
     ("sort=(SELECT 1)", {"sort": [SORTS]}),
     ("limit=1 OR 1=1", {"limit": ["Not a valid integer."]})],
)  # fmt: skip
def test_hostile_list_parameters_are_400(alice, query, details):
    response = alice.get(f"/api/alice/tasks?{query}")
    assert response.status_code == 400
    assert response.json["error"]["details"] == {"query": details}


def test_hostile_token_claims_are_data(app):
    user = "x' OR 1=1 --"
    client = app.test_client()
    headers = {"Authorization": f"Bearer {make_token(user)}"}
    response = client.get(f"/api/{quote(user, safe='')}/tasks", headers=headers)
    assert response.status_code == 200 and response.json["data"] == []
