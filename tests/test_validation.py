"""Bad input: 400 VALIDATION_ERROR by location, 404/405/413/415/500 in the envelope, no writes"""

import logging

import pytest
import sqlalchemy as sa
from conftest import make_token
from helpers import TIME, count, create, row

from todo import tasks as service
from todo.extensions import db

LIST = "/api/alice/tasks"
LEAKS = (
    "Traceback",
    'File "',
    "SELECT",
    "INSERT",
    "UPDATE tasks",
    "sqlalchemy",
    "psycopg",
    "sqlite3",
    "werkzeug",
    "test-secret",
)


MESSAGES = {  # each code's message, where a test does not name another
    "VALIDATION_ERROR": "The request is not valid; see details.",
    "NOT_FOUND": "Not found.",
    "METHOD_NOT_ALLOWED": "Method not allowed for this resource.",
    "PAYLOAD_TOO_LARGE": "The request body is too large.",
    "UNSUPPORTED_MEDIA_TYPE": "The request body must be JSON (Content-Type: application/json).",
    "INTERNAL_ERROR": "An internal error occurred.",
}


def assert_error(response, status, code, details=None, message=None):
    """The response is the contract's error envelope, and leaks nothing."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "timestamp", "request_id"}
    assert error["code"] == code
    assert error["message"] == (message or MESSAGES[code])
    assert error["details"] == details
    assert TIME.match(error["timestamp"])
    assert error["request_id"] == response.headers["X-Request-ID"]
    text = response.get_data(as_text=True)
    for leak in LEAKS:
        assert leak not in text


def json_error(field, *messages):
    return {"json": {field: list(messages)}}


# Bodies

BAD_BODIES = [
    ({"title": "x", "colour": "red"}, json_error("colour", "Unknown field.")),
    ({"title": "x", "Title": "y"}, json_error("Title", "Unknown field.")),
    ({}, json_error("title", "Missing data for required field.")),
    ({"title": None}, json_error("title", "Field may not be null.")),
    ({"title": 5}, json_error("title", "Not a valid string.")),
    ({"title": ["x"]}, json_error("title", "Not a valid string.")),
    ({"title": "   "}, json_error("title", "Length must be between 1 and 500.")),
    ({"title": "\t\n"}, json_error("title", "Length must be between 1 and 500.")),
    ({"title": "x" * 501}, json_error("title", "Length must be between 1 and 500.")),
    ({"title": " " + "x" * 501 + " "}, json_error("title", "Length must be between 1 and 500.")),
    (
        {"title": "x", "description": "d" * 10_001},
        json_error("description", "Longer than maximum length 10000."),
    ),
    ({"title": "x", "description": 3}, json_error("description", "Not a valid string.")),
    ({"title": "x", "is_completed": "yes"}, json_error("is_completed", "Not a valid boolean.")),
    ({"title": "x", "is_completed": "true"}, json_error("is_completed", "Not a valid boolean.")),
    ({"title": "x", "is_completed": 1}, json_error("is_completed", "Not a valid boolean.")),
    ({"title": "x", "is_completed": 0}, json_error("is_completed", "Not a valid boolean.")),
    ({"title": "x", "is_completed": None}, json_error("is_completed", "Field may not be null.")),
    ({"title": "a\x00b"}, json_error("title", "Must not contain NUL characters.")),
    (
        {"title": "x", "description": "\x00"},
        json_error("description", "Must not contain NUL characters."),
    ),
]


@pytest.mark.parametrize(("body", "details"), BAD_BODIES)
def test_bad_post_bodies_are_400_and_write_nothing(app, alice, body, details):
    response = alice.post(LIST, json=body)

    assert_error(
        response, 400, "VALIDATION_ERROR", details, message="The request is not valid; see details."
    )
    assert count(app) == 0


@pytest.mark.parametrize(("body", "details"), BAD_BODIES[:2] + BAD_BODIES[3:])
def test_bad_put_bodies_are_400_and_change_nothing(app, alice, body, details):
    task = create(alice)
    before = row(app, task["id"])

    response = alice.put(f"{LIST}/{task['id']}", json=body)

    assert_error(response, 400, "VALIDATION_ERROR", details)
    assert row(app, task["id"]) == before


def test_several_errors_are_reported_together(alice):
    response = alice.post(LIST, json={"title": "", "is_completed": "no", "x": 1})

    assert_error(
        response,
        400,
        "VALIDATION_ERROR",
        {
            "json": {
                "title": ["Length must be between 1 and 500."],
                "is_completed": ["Not a valid boolean."],
                "x": ["Unknown field."],
            }
        },
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", "Not a valid boolean."),
        (1, "Not a valid boolean."),
        (None, "Field may not be null."),
        ("false", "Not a valid boolean."),
        ([], "Not a valid boolean."),
    ],
)
def test_bad_patch_bodies_are_400_and_change_nothing(app, alice, value, message):
    task = create(alice)
    before = row(app, task["id"])

    response = alice.patch(f"{LIST}/{task['id']}/complete", json={"is_completed": value})

    assert_error(response, 400, "VALIDATION_ERROR", json_error("is_completed", message))
    assert row(app, task["id"]) == before


def test_lengths_at_the_limits_are_accepted(app, alice):
    task = create(alice, title="  " + "t" * 500 + "  ", description="d" * 10_000)

    assert task["title"] == "t" * 500
    assert task["description"] == "d" * 10_000
    assert count(app) == 1


def test_a_title_that_lengthens_when_lowercased_is_stored(app, alice):
    # str.lower("İ") is two code points: the lowercased copy is longer than the title
    task = create(alice, title="İ" * 500)

    assert task["title"] == "İ" * 500
    assert row(app, task["id"])["title_lower"] == "i̇" * 500
    found = alice.get(LIST, query_string={"q": "İİ"})
    assert [t["id"] for t in found.json["data"]] == [task["id"]]


RAW_BAD_JSON = [
    ('{"title": "x",}', "Invalid JSON body."),
    ('{"title": ', "Invalid JSON body."),
    ("{'title': 'x'}", "Invalid JSON body."),
    ('{"title": "x"} trailing', "Invalid JSON body."),
    ("NaN", "Invalid input type."),
    ('["title"]', "Invalid input type."),
    ('"title"', "Invalid input type."),
    ("42", "Invalid input type."),
    ("true", "Invalid input type."),
    ("null", "Invalid input type."),
    ("[" * 100_00 + "]" * 100_00, "Invalid JSON body."),
    ('{"title": "x", "is_completed": ' + "1" * 5000 + "}", "Invalid JSON body."),
]


@pytest.mark.parametrize(("raw", "message"), RAW_BAD_JSON)
def test_malformed_or_non_object_json_is_400(app, alice, raw, message):
    response = alice.post(LIST, data=raw, content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR", {"json": {"_schema": [message]}})
    assert count(app) == 0


def test_invalid_utf8_body_is_400(app, alice):
    response = alice.post(LIST, data=b'{"title": "\xff\xfe"}', content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR", {"json": {"_schema": ["Invalid JSON body."]}})
    assert count(app) == 0


SURROGATE = "Must not contain lone surrogates."


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ('{"title": "\\ud800"}', "title", SURROGATE),
        ('{"title": "a\\udfffb"}', "title", SURROGATE),
        ('{"title": "x", "description": "\\ud83d"}', "description", SURROGATE),
        ('{"title": "x\\u0000y"}', "title", "Must not contain NUL characters."),
    ],
)
def test_lone_surrogates_and_nul_escapes_are_400_on_every_backend(app, alice, raw, field, message):
    response = alice.post(LIST, data=raw, content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR", json_error(field, message))
    assert count(app) == 0


def test_surrogate_pairs_are_characters(alice):
    response = alice.post(
        LIST, data='{"title": "\\ud83d\\ude00 party"}', content_type="application/json"
    )

    assert response.status_code == 201
    assert response.json["data"]["title"] == "\U0001f600 party"


def test_nul_in_q_is_400(alice):
    response = alice.get(LIST, query_string={"q": "a\x00"})

    assert_error(
        response, 400, "VALIDATION_ERROR", {"query": {"q": ["Must not contain NUL characters."]}}
    )


def test_invalid_utf8_in_the_query_string_is_not_an_error(alice):
    # Werkzeug decodes it with U+FFFD replacement, so no lone surrogate reaches q.
    response = alice.get(LIST + "?q=%ED%A0%80")

    assert response.status_code == 200
    assert response.json["data"] == []


def test_huge_numbers_in_the_query_are_400(alice):
    response = alice.get(LIST, query_string={"limit": "9" * 5000})

    assert_error(response, 400, "VALIDATION_ERROR", {"query": {"limit": ["Not a valid integer."]}})


def test_query_and_body_errors_name_their_location(alice):
    query = alice.get(LIST, query_string={"limit": "x"})
    body = alice.post(LIST, json={"title": ""})

    assert list(query.json["error"]["details"]) == ["query"]
    assert list(body.json["error"]["details"]) == ["json"]


# Media types and sizes


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ('{"title": "x"}', "text/plain"),
        ("title=x", "application/x-www-form-urlencoded"),
        ('{"title": "x"}', None),
        ("<title>x</title>", "application/xml"),
    ],
)
def test_non_json_bodies_are_415(app, alice, data, content_type):
    response = alice.post(LIST, data=data, content_type=content_type)

    assert_error(
        response,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        None,
        message="The request body must be JSON (Content-Type: application/json).",
    )
    assert count(app) == 0


def test_multipart_body_is_415(app, alice):
    response = alice.post(LIST, data={"title": "x"})  # multipart/form-data

    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert count(app) == 0


def test_non_json_body_on_put_and_patch_is_415(app, alice):
    task = create(alice)

    put = alice.put(f"{LIST}/{task['id']}", data="title=x", content_type="text/plain")
    patch = alice.patch(f"{LIST}/{task['id']}/complete", data="x", content_type="text/plain")

    assert_error(put, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_error(patch, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert row(app, task["id"])["is_completed"] is False


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
        "application/json; charset=latin-1",
    ],
)
def test_json_with_a_charset_parameter_is_accepted(app, alice, content_type):
    response = alice.post(LIST, data='{"title": "Caf\\u00e9"}', content_type=content_type)

    assert response.status_code == 201
    assert response.json["data"]["title"] == "Café"


def test_body_over_max_content_length_is_413(make_app, client_for, database_url):
    app = make_app(MAX_CONTENT_LENGTH=200)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = alice_header(client_for)

    small = client.post(LIST, json={"title": "x" * 150})
    large = client.post(LIST, json={"title": "x" * 200})

    assert small.status_code == 201
    assert_error(large, 413, "PAYLOAD_TOO_LARGE", None, message="The request body is too large.")
    assert count(app) == 1


def alice_header(client_for):
    return client_for("alice").environ_base["HTTP_AUTHORIZATION"]


def test_default_max_content_length_is_64_kib(app, alice):
    response = alice.post(LIST, json={"title": "x", "description": "d" * 65_536})

    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert app.config["MAX_CONTENT_LENGTH"] == 65_536


# Routing


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api",
        "/api/alice",
        "/api/alice/task",
        "/api/alice/tasks/x/y",
        "/api/alice/tasks/x/complete/more",
        "/api//tasks",
    ],
)
def test_unknown_routes_are_404_in_the_envelope(alice, path):
    assert_error(alice.get(path), 404, "NOT_FOUND", None)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("patch", LIST, "GET, HEAD, OPTIONS, POST"),
        ("delete", LIST, "GET, HEAD, OPTIONS, POST"),
        ("post", LIST + "/00000000-0000-4000-8000-000000000000", "DELETE, GET, HEAD, OPTIONS, PUT"),
        ("get", LIST + "/00000000-0000-4000-8000-000000000000/complete", "OPTIONS, PATCH"),
        ("post", "/healthz", "GET, HEAD, OPTIONS"),
    ],
)
def test_wrong_method_is_405_with_allow(alice, method, path, allowed):
    response = getattr(alice, method)(path)

    assert_error(response, 405, "METHOD_NOT_ALLOWED", None)
    # in one order, whatever the process's string hashing (werkzeug collects a set)
    assert response.headers["Allow"] == allowed


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (LIST, "GET, HEAD, OPTIONS, POST"),
        (LIST + "/00000000-0000-4000-8000-000000000000", "DELETE, GET, HEAD, OPTIONS, PUT"),
    ],
)
def test_options_lists_the_methods_in_one_order(app, path, allowed):
    response = app.test_client().options(path)  # no token: a preflight needs none

    assert response.status_code == 200
    assert response.headers["Allow"] == allowed


# 500


@pytest.fixture
def production_like(make_app):
    app = make_app(TESTING=False, PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("SELECT password FROM secrets -- test-secret")

    return app


def test_unhandled_error_is_500_in_the_envelope_without_a_traceback(production_like, caplog):
    client = production_like.test_client()

    with caplog.at_level(logging.ERROR, logger="todo"):
        response = client.get("/boom", headers={"X-Request-ID": "boom-1"})

    assert_error(response, 500, "INTERNAL_ERROR", None, message="An internal error occurred.")
    assert response.json["error"]["request_id"] == "boom-1"
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    assert logged[0].request_id == "boom-1"


@pytest.mark.parametrize(
    "sql",
    ["SELECT no_such_column FROM tasks", "SELECT * FROM no_such_table", "SELEC 1"],
)
def test_a_statement_the_database_cannot_run_is_a_500_on_every_backend(make_app, sql):
    # sqlite3 calls these OperationalError, like an unreachable database (a 503):
    # they are bugs, a 500 as PostgreSQL's ProgrammingError is.
    app = make_app(TESTING=False, PROPAGATE_EXCEPTIONS=False)

    @app.get("/bad-sql")
    def bad_sql():
        db.session.execute(sa.text(sql))

    response = app.test_client().get("/bad-sql")

    assert_error(response, 500, "INTERNAL_ERROR", None, message="An internal error occurred.")
    assert "Retry-After" not in response.headers


def test_error_inside_an_api_view_is_500_and_writes_nothing(production_like, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("INSERT INTO tasks ... psycopg")

    monkeypatch.setattr(service, "new_task", broken)
    client = production_like.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + make_token("alice")

    response = client.post(LIST, json={"title": "x"})

    assert_error(response, 500, "INTERNAL_ERROR", None)
    assert count(production_like) == 0
