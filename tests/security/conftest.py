"""Helpers of the security suite: the six operations, and tasks made for a user"""

import pytest


def operations(user, task_id):
    """(method, path, json body) of every operation of the API, for `user` and `task_id`."""
    base = f"/api/{user}/tasks"
    return [
        ("GET", base, None),
        ("POST", base, {"title": "written by the caller"}),
        ("GET", f"{base}/{task_id}", None),
        ("PUT", f"{base}/{task_id}", {"title": "hijacked", "is_completed": True}),
        ("DELETE", f"{base}/{task_id}", None),
        ("PATCH", f"{base}/{task_id}/complete", None),
    ]


OPERATION_IDS = ["list", "create", "get", "put", "delete", "complete"]


def send(client, method, path, body=None, **kwargs):
    return client.open(path, method=method, json=body, **kwargs)


@pytest.fixture
def create():
    """create(client, user, title=..., **fields): the task the API returned."""

    def create(client, user, title="a task", **fields):
        response = client.post(f"/api/{user}/tasks", json={"title": title, **fields})
        assert response.status_code == 201, response.json
        return response.json["data"]

    return create
