"""Headers: X-Request-ID, Cache-Control, nosniff, HSTS, and CORS"""

import json
import logging
import uuid

import pytest
from helpers import UUID, create

from todo.logs import JSONFormatter

LIST = "/api/alice/tasks"
ORIGIN = "https://app.example.com"
ALLOWED_HEADERS = {
    "authorization",
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-request-id",
}
EXPOSED_HEADERS = {"etag", "idempotent-replayed", "location", "x-request-id"}


def header_set(value):
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


# X-Request-ID


@pytest.mark.parametrize("request_id", ["abc", "A.b_c-9", "x" * 128, "0", "..", "-_-"])
def test_a_valid_request_id_is_echoed_in_header_and_meta(alice, request_id):
    response = alice.get(LIST, headers={"X-Request-ID": request_id})

    assert response.headers["X-Request-ID"] == request_id
    assert response.json["meta"]["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id", ["", "x" * 129, "has space", "a/b", "a;b", "a:b", "é", "<script>", "a\tb"]
)
def test_an_invalid_request_id_is_replaced_by_a_uuid(alice, request_id):
    response = alice.get(LIST, headers={"X-Request-ID": request_id})

    generated = response.headers["X-Request-ID"]
    assert UUID.match(generated)
    assert response.json["meta"]["request_id"] == generated


def test_each_request_gets_its_own_generated_id(alice):
    first = alice.get(LIST).headers["X-Request-ID"]
    second = alice.get(LIST).headers["X-Request-ID"]

    assert UUID.match(first) and UUID.match(second) and first != second


def test_the_request_id_is_in_errors(anonymous, alice):
    unauthorized = anonymous.get(LIST, headers={"X-Request-ID": "req-401"})
    invalid = alice.post(LIST, json={}, headers={"X-Request-ID": "req-400"})
    missing = anonymous.get("/nope", headers={"X-Request-ID": "req-404"})

    for response, request_id in (
        (unauthorized, "req-401"),
        (invalid, "req-400"),
        (missing, "req-404"),
    ):
        assert response.headers["X-Request-ID"] == request_id
        assert response.json["error"]["request_id"] == request_id


def test_the_request_id_is_in_the_access_log_line(caplog, alice):
    with caplog.at_level(logging.INFO, logger="todo"):
        response = alice.post(LIST, json={"title": "x"}, headers={"X-Request-ID": "log-me-1"})

    assert response.status_code == 201
    lines = [r for r in caplog.records if r.name == "todo.access"]
    assert len(lines) == 1
    record = lines[0]
    assert record.request_id == "log-me-1"
    assert record.getMessage() == "POST /api/alice/tasks 201"
    assert record.status == 201
    assert record.method == "POST"
    assert record.route == "/api/<user_id>/tasks"
    assert record.user_id == "alice"
    # and in the JSON line the app writes for it
    line = json.loads(JSONFormatter().format(record))
    assert line["request_id"] == "log-me-1"
    assert line["message"] == "POST /api/alice/tasks 201"
    assert line["status"] == 201


def test_a_generated_request_id_is_the_one_logged(alice, caplog):
    with caplog.at_level(logging.INFO, logger="todo"):
        response = alice.get(LIST, headers={"X-Request-ID": "not valid"})

    (record,) = [r for r in caplog.records if r.name == "todo.access"]
    assert record.request_id == response.headers["X-Request-ID"]


# Cache-Control and nosniff


def test_api_responses_are_not_stored_including_errors(anonymous, alice):
    task = create(alice)
    responses = [
        alice.get(LIST),
        alice.get(f"{LIST}/{task['id']}"),
        alice.post(LIST, json={}),
        alice.get(f"{LIST}/{uuid.uuid4()}"),
        alice.patch(LIST),
        alice.get("/api/bob/tasks"),
        anonymous.get(LIST),
        alice.delete(f"{LIST}/{task['id']}"),
        alice.get("/api/alice/nothing-here"),
        anonymous.get("/api"),
    ]

    assert [r.headers.get("Cache-Control") for r in responses] == ["no-store"] * 10
    assert [r.status_code for r in responses] == [200, 200, 400, 404, 405, 403, 401, 204, 404, 404]


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/readyz", "/openapi.json", "/docs", "/docs/assets/swagger-ui.css", "/nope", LIST],
)
def test_nosniff_everywhere(anonymous, path):
    with anonymous.get(path) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_nosniff_and_request_id_on_500(make_app):
    app = make_app(TESTING=False, PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    response = app.test_client().get("/boom", headers={"X-Request-ID": "r500"})

    assert response.status_code == 500
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-ID"] == "r500"


# HSTS


@pytest.mark.parametrize("environment", ["development", "test"])
def test_no_hsts_outside_production(make_app, environment):
    client = make_app(ENVIRONMENT=environment).test_client()

    for path in ("/healthz", LIST):
        response = client.get(path)
        assert response.status_code == (200 if path == "/healthz" else 401)
        assert "Strict-Transport-Security" not in response.headers


# CORS


@pytest.fixture
def cors_app(make_app):
    return make_app(CORS_ORIGINS=[ORIGIN, "http://localhost:3000"])


def test_an_allowed_origin_gets_cors_headers(cors_app, client_for):
    client = cors_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = client_for("alice").environ_base[
        "HTTP_AUTHORIZATION"
    ]

    response = client.post(LIST, json={"title": "x"}, headers={"Origin": ORIGIN})

    assert response.status_code == 201
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert header_set(response.headers["Access-Control-Expose-Headers"]) == EXPOSED_HEADERS
    assert response.headers["Vary"] == "Origin"


def test_errors_carry_cors_headers_so_scripts_can_read_them(cors_app):
    response = cors_app.test_client().get(LIST, headers={"Origin": ORIGIN})

    assert response.status_code == 401
    assert response.json["error"]["code"] == "AUTHENTICATION_REQUIRED"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert header_set(response.headers["Access-Control-Expose-Headers"]) == EXPOSED_HEADERS


def test_an_unknown_origin_gets_no_cors_headers(cors_app):
    response = cors_app.test_client().get(LIST, headers={"Origin": "https://evil.example.com"})

    assert response.status_code == 401
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control")]


def test_no_cors_headers_on_a_request_without_origin(cors_app):
    response = cors_app.test_client().get(LIST)

    assert response.status_code == 401
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control")]


@pytest.mark.parametrize("origin", ["http://[::1]:3000", "http://127.0.0.1:3000"])
def test_an_address_origin_is_matched_exactly(make_app, origin):
    client = make_app(CORS_ORIGINS=[origin]).test_client()

    allowed = client.get(LIST, headers={"Origin": origin})
    # What the origin would match as a regular expression ([::1] is a character class).
    refused = client.get(LIST, headers={"Origin": origin.replace("[::1]", "1") + "0"})

    assert allowed.headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_no_cors_headers_without_cors_origins(anonymous):
    response = anonymous.get(LIST, headers={"Origin": ORIGIN})

    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("path", "method"),
    [
        (LIST, "POST"),
        (LIST, "GET"),
        (f"{LIST}/{uuid.uuid4()}", "PUT"),
        (f"{LIST}/{uuid.uuid4()}", "DELETE"),
        (f"{LIST}/{uuid.uuid4()}/complete", "PATCH"),
    ],
)
def test_preflight_needs_no_token_and_allows_the_contract_headers(cors_app, path, method):
    response = cors_app.test_client().options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join(sorted(ALLOWED_HEADERS)),
        },
    )

    assert response.status_code == 200
    assert "WWW-Authenticate" not in response.headers
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert header_set(response.headers["Access-Control-Allow-Headers"]) == ALLOWED_HEADERS
    # one list for every route: the methods of the six operations, HEAD and OPTIONS
    assert header_set(response.headers["Access-Control-Allow-Methods"]) == {
        "delete",
        "get",
        "head",
        "options",
        "patch",
        "post",
        "put",
    }
    assert response.data == b""


def test_preflight_does_not_allow_other_headers(cors_app):
    response = cors_app.test_client().options(
        LIST,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Evil",
        },
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Access-Control-Allow-Headers" not in response.headers  # so the browser refuses


def test_preflight_from_an_unknown_origin_is_not_allowed(cors_app):
    response = cors_app.test_client().options(
        LIST,
        headers={
            "Origin": "https://evil.example.com",
            "Access-Control-Request-Method": "POST",
        },
    )

    assert response.status_code == 200
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control")]


@pytest.mark.parametrize("origins", [[ORIGIN], [ORIGIN, "http://localhost:3000"]])
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": ORIGIN},
        {"Origin": "https://evil.example.com"},
        {},
        {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},  # with OPTIONS
    ],
    ids=["allowed", "unknown", "without-origin", "preflight"],
)
def test_every_cors_answer_varies_by_origin_whatever_the_number_of_origins(
    make_app, origins, headers
):
    """A cache must not hand the answer to one Origin (or to none) to another: with a
    single origin flask-cors sends no Vary, and never on answers without CORS headers."""
    client = make_app(CORS_ORIGINS=origins).test_client()
    method = "OPTIONS" if "Access-Control-Request-Method" in headers else "GET"

    response = client.open(LIST, method=method, headers=headers)

    assert response.status_code == (200 if method == "OPTIONS" else 401)
    assert response.headers.getlist("Vary") == ["Origin"]
    allowed = headers.get("Origin") == ORIGIN
    assert response.headers.get("Access-Control-Allow-Origin") == (ORIGIN if allowed else None)


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs"])
def test_answers_outside_api_have_no_cors_headers_so_do_not_vary(make_app, path):
    client = make_app(CORS_ORIGINS=[ORIGIN]).test_client()

    with client.get(path, headers={"Origin": ORIGIN}) as response:
        assert response.status_code == 200
        assert "Vary" not in response.headers
        assert "Access-Control-Allow-Origin" not in response.headers


def test_no_vary_without_cors_origins(anonymous):
    response = anonymous.get(LIST, headers={"Origin": ORIGIN})

    assert "Vary" not in response.headers
