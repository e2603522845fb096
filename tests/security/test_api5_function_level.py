"""OWASP API5, broken function-level authorisation: the six operations are all
there is; other methods are 405, other paths 404, and none bypass the token"""

import pytest

from tests.conftest import make_token


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/alice/tasks", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("PUT", "/api/alice/tasks", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("PATCH", "/api/alice/tasks", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("POST", "/api/alice/tasks/some-id", {"DELETE", "GET", "HEAD", "OPTIONS", "PUT"}),
        ("PATCH", "/api/alice/tasks/some-id", {"DELETE", "GET", "HEAD", "OPTIONS", "PUT"}),
        ("GET", "/api/alice/tasks/some-id/complete", {"OPTIONS", "PATCH"}),
        ("POST", "/api/alice/tasks/some-id/complete", {"OPTIONS", "PATCH"}),
    ],
)
def test_other_methods_are_405_with_allow(alice, method, path, allow):
    response = alice.open(path, method=method)
    assert response.status_code == 405
    assert response.json["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == allow


@pytest.mark.parametrize(
    "path",
    ["/api/tasks", "/api/alice", "/api/alice/tasks/x/y", "/api/alice/users", "/admin",
     "/api/alice/tasks/x/complete/now", "/api//tasks"],
)  # fmt: skip
def test_no_other_paths(alice, path):
    response = alice.get(path)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "NOT_FOUND"


def test_preflight_needs_no_token_and_returns_no_data(make_app):
    app = make_app(CORS_ORIGINS=["https://app.example.com"])
    response = app.test_client().options(
        "/api/alice/tasks",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "WWW-Authenticate" not in response.headers


def test_head_is_authenticated_like_get(app):
    client = app.test_client()
    assert client.head("/api/alice/tasks").status_code == 401
    token = make_token("alice")
    ok = client.head("/api/alice/tasks", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.data == b""
