"""The committed OpenAPI document is the one the code generates, and says what the code does"""

import json
import re
import uuid
from pathlib import Path

import pytest
from conftest import BACKENDS, base_config, make_token
from helpers import TASK_FIELDS, create

from todo import create_app
from todo.extensions import db

COMMITTED = Path(__file__).resolve().parent.parent / "openapi.json"
LIST = "/api/{user_id}/tasks"
ONE = "/api/{user_id}/tasks/{task_id}"
COMPLETE = "/api/{user_id}/tasks/{task_id}/complete"
LIST_URL = "/api/alice/tasks"


def test_committed_openapi_matches_the_code(anonymous):
    served = anonymous.get("/openapi.json").json

    assert served == json.loads(COMMITTED.read_text()), (
        "openapi.json is stale: run `flask openapi write --format=json openapi.json`"
    )


def test_spec_lists_no_page_number_pagination(anonymous):
    """Lists page by cursor (meta.next_cursor); flask-smorest's page-number header and
    its schema are not the API's."""
    spec = anonymous.get("/openapi.json").json

    assert "PaginationMetadata" not in spec["components"]["schemas"]


def test_every_field_of_an_answer_is_required_and_no_other_allowed(anonymous):
    """A task has exactly its eight fields; the envelopes always carry theirs."""
    schemas = anonymous.get("/openapi.json").json["components"]["schemas"]

    expected = {
        "Task": set(TASK_FIELDS),
        "Meta": {"timestamp", "request_id"},
        "ListMeta": {"timestamp", "request_id", "count", "limit", "next_cursor", "total"},
        "TaskResponse": {"data", "meta"},
        "TaskListResponse": {"data", "meta"},
        "Error": {"code", "message", "details", "timestamp", "request_id"},
        "ErrorResponse": {"error"},
    }
    for name, fields in expected.items():
        assert set(schemas[name]["required"]) == set(schemas[name]["properties"]) == fields, name
        assert schemas[name]["additionalProperties"] is False, name


def test_spec_declares_bearer_security_and_the_six_operations(anonymous):
    spec = anonymous.get("/openapi.json").json

    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operations = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert operations == {
        ("GET", "/api/{user_id}/tasks"),
        ("POST", "/api/{user_id}/tasks"),
        ("GET", "/api/{user_id}/tasks/{task_id}"),
        ("PUT", "/api/{user_id}/tasks/{task_id}"),
        ("DELETE", "/api/{user_id}/tasks/{task_id}"),
        ("PATCH", "/api/{user_id}/tasks/{task_id}/complete"),
    }


ANY_OPERATION = {"401", "403", "429", "503"}  # authentication, rate limit, database
ERRORS = {
    ("get", "/api/{user_id}/tasks"): {"400"} | ANY_OPERATION,
    ("post", "/api/{user_id}/tasks"): {"400", "409", "413", "415"} | ANY_OPERATION,
    ("get", "/api/{user_id}/tasks/{task_id}"): {"404"} | ANY_OPERATION,
    ("put", "/api/{user_id}/tasks/{task_id}"): {"400", "404", "412", "413", "415"} | ANY_OPERATION,
    ("delete", "/api/{user_id}/tasks/{task_id}"): {"404", "412"} | ANY_OPERATION,
    ("patch", "/api/{user_id}/tasks/{task_id}/complete"): {"400", "404", "412", "413", "415"}
    | ANY_OPERATION,
}


def test_spec_documents_the_error_answers_in_the_envelope(anonymous):
    spec = anonymous.get("/openapi.json").json
    responses = spec["components"]["responses"]

    for (method, path), codes in ERRORS.items():
        operation = spec["paths"][path][method]
        documented = {code for code in operation["responses"] if code.startswith(("4", "5"))}
        assert documented == codes, (method, path)
        for code in documented:
            name = operation["responses"][code]["$ref"].rsplit("/", 1)[-1]
            schema = responses[name]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    error = spec["components"]["schemas"]["Error"]["properties"]
    assert set(error) == {"code", "message", "details", "timestamp", "request_id"}


def test_the_user_id_parameter_has_the_contracts_length(anonymous):
    spec = anonymous.get("/openapi.json").json

    for path in (LIST, ONE, COMPLETE):
        parameters = spec["paths"][path]["parameters"]
        assert [p for p in parameters if p["name"] == "user_id"] == [
            {
                "in": "path",
                "name": "user_id",
                "description": "The token's user (another user's id is 403): an opaque id "
                "from the identity provider.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "required": True,
            }
        ], path


def test_a_longer_user_id_is_refused_by_authentication_not_validation(alice, client_for):
    """The length is only documented: authentication (401), then the URL user (403)
    come first, as the contract orders them, never a 400 or 404."""
    url = f"/api/{'u' * 256}/tasks"

    as_alice = alice.get(url)
    as_that_user = client_for("u" * 256).get(url)

    assert (as_alice.status_code, as_alice.json["error"]["code"]) == (403, "FORBIDDEN")
    assert (as_that_user.status_code, as_that_user.json["error"]["code"]) == (
        401,
        "INVALID_TOKEN",
    )


# Headers: what finish_response, the error handler and the rate limiter put on answers

OPERATIONS = list(ERRORS)  # (method, path) of the six
EVERY_ANSWER = {"X-Request-ID", "Cache-Control", "X-Content-Type-Options"}
HSTS = {"Strict-Transport-Security"}  # on every answer, in production only
RATE_LIMIT_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
OWN_HEADERS = {  # response component -> the headers it lists beyond EVERY_ANSWER and HSTS
    "UNAUTHORIZED": {"WWW-Authenticate"},
    "FORBIDDEN": set(),  # authentication answers both before the rate limiter counts
    "TOO_MANY_REQUESTS": {"Retry-After"} | RATE_LIMIT_HEADERS,
    "SERVICE_UNAVAILABLE": {"Retry-After"} | RATE_LIMIT_HEADERS,
}


def resolve(spec, item):
    """`item`, or the component its $ref names."""
    if "$ref" not in item:
        return item
    _, _, section, name = item["$ref"].split("/")
    return spec["components"][section][name]


def documented_headers(spec, method, path, status):
    """The headers the document lists on `method path`'s answer `status`, resolved."""
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method} {path} does not document {status}"
    response = resolve(spec, responses[str(status)])
    return {name: resolve(spec, header) for name, header in response.get("headers", {}).items()}


SUCCESS = {
    ("get", LIST): {"200"},
    ("post", LIST): {"201"},
    ("get", ONE): {"200", "304"},
    ("put", ONE): {"200"},
    ("delete", ONE): {"204"},
    ("patch", COMPLETE): {"200"},
}


def test_every_answer_of_every_operation_lists_the_headers_of_every_answer(anonymous):
    spec = anonymous.get("/openapi.json").json

    assert set(SUCCESS) == set(ERRORS)
    for (method, path), successes in SUCCESS.items():
        responses = spec["paths"][path][method]["responses"]
        assert {code for code in responses if code.startswith(("2", "3"))} == successes, (
            method,
            path,
        )
        assert set(responses) == successes | ERRORS[method, path] | {"default"}
        for status in responses:
            documented = documented_headers(spec, method, path, status)
            assert EVERY_ANSWER | HSTS <= set(documented), (method, path, status)
            for name in EVERY_ANSWER:
                assert documented[name]["required"] is True
            assert documented["Strict-Transport-Security"]["required"] is False
            if status not in ("401", "403"):
                assert RATE_LIMIT_HEADERS <= set(documented), (method, path, status)


def test_headers_that_depend_on_the_configuration_are_documented_as_optional(anonymous):
    """One document for every deployment: what only some configurations send is
    listed, not required, and its description says when it is sent."""
    headers = anonymous.get("/openapi.json").json["components"]["headers"]

    assert headers["STRICT_TRANSPORT_SECURITY"] == {
        "description": "Only when the server runs with `ENVIRONMENT=production`, on "
        "every answer: use HTTPS for this host for a year.",
        "required": False,
        "schema": {"type": "string", "enum": ["max-age=31536000"]},
    }
    when = (
        "Only when rate limiting is enabled (`RATE_LIMIT`), on the answers to requests "
        "that passed authentication and the URL-user check: "
    )
    assert {name: headers[name] for name in headers if name.startswith("X_RATELIMIT")} == {
        "X_RATELIMIT_LIMIT": {
            "description": when + "the requests the user may make per window.",
            "required": False,
            "schema": {"type": "integer"},
        },
        "X_RATELIMIT_REMAINING": {
            "description": when + "the requests the user has left in this window.",
            "required": False,
            "schema": {"type": "integer"},
        },
        "X_RATELIMIT_RESET": {
            "description": when + "when the window resets, in seconds since the Unix epoch.",
            "required": False,
            "schema": {"type": "integer"},
        },
    }


def test_every_operation_documents_429_and_503_with_retry_after(anonymous):
    """Any operation may answer them, whatever its view: 429 when rate limiting is
    enabled (after authentication), 503 when the database cannot be reached."""
    spec = anonymous.get("/openapi.json").json

    for method, path in OPERATIONS:
        responses = spec["paths"][path][method]["responses"]
        assert responses["429"] == {"$ref": "#/components/responses/TOO_MANY_REQUESTS"}
        assert responses["503"] == {"$ref": "#/components/responses/SERVICE_UNAVAILABLE"}
        for status in ("429", "503"):
            assert documented_headers(spec, method, path, status)["Retry-After"] == {
                "description": "Seconds to wait before trying again.",
                "required": True,
                "schema": {"type": "integer"},
            }


def test_error_components_list_their_own_headers(anonymous):
    """Operations name their errors ($ref), and OpenAPI 3.0 allows nothing beside a
    $ref: the headers are in the components, which todo.api.Api._register_responses
    writes instead of flask-smorest's (without it, none of these headers is listed)."""
    spec = anonymous.get("/openapi.json").json
    responses = spec["components"]["responses"]
    headers = spec["components"]["headers"]

    for name, response in responses.items():
        own = OWN_HEADERS.get(name, RATE_LIMIT_HEADERS)
        assert set(response["headers"]) == EVERY_ANSWER | HSTS | own, name
    assert set(responses) == {
        "BAD_REQUEST",
        "CONFLICT",
        "DEFAULT_ERROR",
        "FORBIDDEN",
        "NOT_FOUND",
        "PRECONDITION_FAILED",
        "REQUEST_ENTITY_TOO_LARGE",
        "SERVICE_UNAVAILABLE",
        "TOO_MANY_REQUESTS",
        "UNAUTHORIZED",
        "UNSUPPORTED_MEDIA_TYPE",
    }
    assert headers["WWW_AUTHENTICATE"]["schema"] == {
        "type": "string",
        "enum": ["Bearer", 'Bearer error="invalid_token"'],
    }
    assert headers["X_REQUEST_ID"]["schema"] == {
        "type": "string",
        "pattern": "^[A-Za-z0-9._-]{1,128}$",
    }
    assert headers["CACHE_CONTROL"]["schema"] == {"type": "string", "enum": ["no-store"]}
    assert headers["X_CONTENT_TYPE_OPTIONS"]["schema"] == {"type": "string", "enum": ["nosniff"]}


def test_every_operation_takes_an_x_request_id(anonymous):
    spec = anonymous.get("/openapi.json").json

    parameter = spec["components"]["parameters"]["X_REQUEST_ID"]
    assert (parameter["in"], parameter["name"], parameter["required"]) == (
        "header",
        "X-Request-ID",
        False,
    )
    # any value is accepted (an invalid one is replaced), so the schema has no pattern
    assert parameter["schema"] == {"type": "string"}
    for method, path in OPERATIONS:
        parameters = spec["paths"][path][method]["parameters"]
        assert {"$ref": "#/components/parameters/X_REQUEST_ID"} in parameters, (method, path)


# The document and the code agree: real answers carry the headers the document lists


def conforms(value, schema):
    if "enum" in schema:
        return value in schema["enum"]
    if "pattern" in schema:
        return re.search(schema["pattern"], value) is not None
    if schema["type"] == "integer":
        return value.isdigit()
    return schema["type"] == "string"


def assert_documented_headers(spec, method, path, response):
    """`response`, an answer of `method path`, has a documented status and carries
    every required header the document lists for it, each as its schema says, and
    no other header but the body's own."""
    documented = documented_headers(spec, method, path, response.status_code)
    assert EVERY_ANSWER <= set(documented)
    sent = set(response.headers.keys()) - {"Content-Type", "Content-Length"}
    assert sent <= set(documented), f"{method} {path} {response.status_code}"
    for name, header in documented.items():
        value = response.headers.get(name)
        if value is None:
            assert not header.get("required"), f"{method} {path} {response.status_code}: {name}"
        else:
            assert conforms(value, header["schema"]), (method, path, name, value)


def client_of(app, user=None, token=None):
    """A test client of `app` whose requests carry `user`'s token (or `token`)."""
    client = app.test_client()
    if user:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token or make_token(user)}"
    return client


# The headers of every answer depend on the configuration: each one is run here.
CONFIGURATIONS = {
    "test": {},
    "rate limited": {"RATE_LIMIT": "100/minute", "RATE_LIMIT_STORAGE_URL": "memory://"},
    "production": {"ENVIRONMENT": "production"},  # Strict-Transport-Security
}


@pytest.mark.parametrize(
    ("backend", "configuration"),
    # ENVIRONMENT=production refuses SQLite
    [(b, c) for b in BACKENDS for c in CONFIGURATIONS if (b, c) != ("sqlite", "production")],
)
def test_real_answers_carry_the_headers_the_document_lists(make_app, backend, configuration):
    app = make_app(**CONFIGURATIONS[configuration], RATE_LIMIT_KEY_PREFIX=uuid.uuid4().hex)
    anonymous, alice = client_of(app), client_of(app, "alice")
    spec = anonymous.get("/openapi.json").json
    task = create(alice)
    one = f"/api/alice/tasks/{task['id']}"
    etag = alice.get(one).headers["ETag"]
    expired = client_of(app, "alice", make_token("alice", ttl=-3600))
    alice.post(LIST_URL, json={"title": "a"}, headers={"Idempotency-Key": "k"})
    without_token = anonymous.get(LIST_URL)
    with_a_bad_token = expired.get(LIST_URL)

    answers = [  # (answer, method, path, expected status)
        (alice.get(LIST_URL), "get", LIST, 200),
        (alice.post(LIST_URL, json={"title": "b"}), "post", LIST, 201),
        (alice.post(LIST_URL, json={}), "post", LIST, 400),
        (without_token, "get", LIST, 401),
        (with_a_bad_token, "get", LIST, 401),
        (alice.get("/api/bob/tasks"), "get", LIST, 403),
        (
            alice.post(LIST_URL, json={"title": "c"}, headers={"Idempotency-Key": "k"}),
            "post",
            LIST,
            409,
        ),
        (alice.post(LIST_URL, json={"title": "x" * 70_000}), "post", LIST, 413),
        (alice.post(LIST_URL, data="x", content_type="text/plain"), "post", LIST, 415),
        (alice.get(one), "get", ONE, 200),
        (alice.get(one, headers={"If-None-Match": etag}), "get", ONE, 304),
        (alice.get(f"{LIST_URL}/{uuid.uuid4()}"), "get", ONE, 404),
        (alice.put(one, json={"title": "d"}), "put", ONE, 200),
        (alice.put(one, json={"title": "e"}, headers={"If-Match": etag}), "put", ONE, 412),
        (alice.patch(f"{one}/complete"), "patch", COMPLETE, 200),
        (alice.delete(one), "delete", ONE, 204),
    ]

    assert [answer.status_code for answer, *_ in answers] == [status for *_, status in answers]
    for answer, method, path, _ in answers:
        assert_documented_headers(spec, method, path, answer)
    assert without_token.headers["WWW-Authenticate"] == "Bearer"
    assert with_a_bad_token.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    # and the optional headers were sent where (and only where) the document says
    for answer, *_ in answers:
        sent = set(answer.headers.keys())
        expected = HSTS if configuration == "production" else set()
        if configuration == "rate limited" and answer.status_code not in (401, 403):
            expected = RATE_LIMIT_HEADERS
        assert sent & (HSTS | RATE_LIMIT_HEADERS) == expected, answer.status_code


def test_a_real_429_carries_the_headers_the_document_lists(make_app):
    app = make_app(RATE_LIMIT="1/minute", RATE_LIMIT_KEY_PREFIX=uuid.uuid4().hex)
    client = app.test_client()
    spec = client.get("/openapi.json").json
    token = {"Authorization": f"Bearer {make_token('alice')}"}

    statuses = [client.get(LIST_URL, headers=token).status_code for _ in range(2)]
    response = client.post(LIST_URL, json={"title": "x"}, headers=token)

    assert statuses == [200, 429]
    assert response.status_code == 429
    assert RATE_LIMIT_HEADERS <= set(response.headers.keys())
    assert_documented_headers(spec, "post", LIST, response)


UNREACHABLE = {
    "sqlite": "sqlite:////nonexistent-todo-dir/sub/todo.sqlite3",
    "postgresql": "postgresql://postgres@127.0.0.1:1/todo",  # nothing listens on port 1
}


@pytest.fixture
def unreachable(backend):
    """An app whose database cannot be reached, and settings on top of its config."""
    apps = []

    def make(**overrides):
        apps.append(
            create_app({**base_config(UNREACHABLE[backend]), "TESTING": False, **overrides})
        )
        return apps[-1]

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()


def test_a_real_503_carries_the_headers_the_document_lists(unreachable):
    client = unreachable().test_client()
    spec = client.get("/openapi.json").json
    token = {"Authorization": f"Bearer {make_token('alice')}"}

    for method, path, url in [
        ("get", LIST, LIST_URL),
        ("post", LIST, LIST_URL),
        ("get", ONE, f"{LIST_URL}/{uuid.uuid4()}"),
        ("put", ONE, f"{LIST_URL}/{uuid.uuid4()}"),
        ("delete", ONE, f"{LIST_URL}/{uuid.uuid4()}"),
        ("patch", COMPLETE, f"{LIST_URL}/{uuid.uuid4()}/complete"),
    ]:
        body = {"title": "x"} if method in ("post", "put") else None
        response = client.open(url, method=method.upper(), json=body, headers=token)
        assert response.status_code == 503, (method, url)
        assert_documented_headers(spec, method, path, response)


def test_a_real_503_keeps_retry_after_with_rate_limiting(unreachable):
    app = unreachable(RATE_LIMIT="100/minute", RATE_LIMIT_KEY_PREFIX=uuid.uuid4().hex)
    token = {"Authorization": f"Bearer {make_token('alice')}"}

    client = app.test_client()
    spec = client.get("/openapi.json").json

    response = client.get(LIST_URL, headers=token)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert RATE_LIMIT_HEADERS <= set(response.headers.keys())
    assert_documented_headers(spec, "get", LIST, response)
