"""What gunicorn (as configured by gunicorn.conf.py) lets through to the app, so that
the contract's answers come from the app: a chunked body over the limit is a 413, a
token over 8 KiB a 401, and a list URL with the longest cursor and search is served.

The server runs on its own SQLite database: these are HTTP limits, the same on every
backend.
"""

import http.client
import json
import urllib.parse
from urllib.parse import urlsplit

import pytest
from conftest import TEST_SECRET, make_token, migrated
from runtime_servers import gunicorn

USER = "limits"
LIMIT = 4096  # MAX_CONTENT_LENGTH of the server
ASTRAL = [chr(c) for c in range(0x20000, 0x2A6DF, 7)]  # 4-byte characters, 12 in a URL


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server-limits")
    database_url = f"sqlite:///{folder / 'todo.sqlite3'}"
    migrated(database_url)
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "JWT_SECRET": TEST_SECRET,
        "WEB_CONCURRENCY": "1",
        "MAX_CONTENT_LENGTH": str(LIMIT),
    }
    with gunicorn(env, folder / "gunicorn.log") as (url, _):
        yield urlsplit(url).netloc


def send(server, method, path, body=None, *, token=None, headers=None):
    """(status, headers, parsed JSON body or None); an iterable body goes chunked."""
    connection = http.client.HTTPConnection(server, timeout=10)
    try:
        headers = {
            "Authorization": f"Bearer {token or make_token(USER)}",
            "Content-Type": "application/json",
            **(headers or {}),
        }
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.headers, json.loads(raw) if raw else None
    finally:
        connection.close()


def chunks(data: bytes, size=300):
    return iter([data[i : i + size] for i in range(0, len(data), size)])


def titles(server):
    status, _, body = send(server, "GET", f"/api/{USER}/tasks?limit=1000")
    assert status == 200
    return [task["title"] for task in body["data"]]


def test_a_chunked_body_over_the_limit_is_413_and_writes_nothing(server):
    # Valid JSON within the limit, then more: cut at the limit it would still parse.
    body = b'{"title": "too big"}' + b" " * LIMIT

    status, headers, answer = send(server, "POST", f"/api/{USER}/tasks", body=chunks(body))

    assert status == 413
    assert headers["Content-Type"] == "application/json"
    assert answer["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert answer["error"]["message"] == "The request body is too large."
    assert "too big" not in titles(server)


def test_a_chunked_body_of_exactly_the_limit_is_accepted(server):
    start = b'{"title": "exactly at the limit"}'
    body = start + b" " * (LIMIT - len(start))
    assert len(body) == LIMIT

    status, _, answer = send(server, "POST", f"/api/{USER}/tasks", body=chunks(body))

    assert status == 201, answer
    assert answer["data"]["title"] == "exactly at the limit"


def test_a_token_over_8_kib_is_401_invalid_token_from_the_app(server):
    token = make_token(USER, padding="p" * 9000)
    assert len(token) > 9000

    status, headers, answer = send(server, "GET", f"/api/{USER}/tasks", token=token)

    assert status == 401
    assert headers["Content-Type"] == "application/json"
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert answer["error"]["code"] == "INVALID_TOKEN"
    assert answer["error"]["message"] == "The token is too large."  # the app's size check


def test_a_next_page_url_with_the_longest_cursor_and_search_is_served(server):
    title = "".join(ASTRAL[(i * 31) % len(ASTRAL)] for i in range(500))
    for _ in range(2):
        assert (
            send(
                server,
                "POST",
                f"/api/{USER}/tasks",
                json.dumps({"title": title}, ensure_ascii=False).encode(),
            )[0]
            == 201
        )
    query = {"sort": "title", "limit": 1, "q": title[:200]}

    status, _, first = send(server, "GET", f"/api/{USER}/tasks?{urllib.parse.urlencode(query)}")
    assert status == 200
    path = f"/api/{USER}/tasks?" + urllib.parse.urlencode(
        {**query, "cursor": first["meta"]["next_cursor"]}
    )
    assert len(path) > 4094  # gunicorn's default request line limit

    status, _, second = send(server, "GET", path)

    assert status == 200, second
    assert [task["title"] for task in second["data"]] == [title]
    assert second["meta"]["next_cursor"] is None
