"""OWASP API8, security misconfiguration: CORS only for listed origins, production
refuses weak settings, no debug pages, protective headers everywhere"""

import pytest
from flask import abort

from tests.conftest import TEST_SECRET, base_config
from todo import create_app
from todo.config import ConfigError

APP_ORIGIN = "https://app.example.com"
PG_URL = "postgresql://todo@127.0.0.1:1/todo"  # never connected to: refused first


@pytest.fixture
def cors_app(make_app):
    return make_app(CORS_ORIGINS=[APP_ORIGIN])


def preflight(app, origin, method="PUT", headers="Authorization, Content-Type"):
    return app.test_client().options(
        "/api/alice/tasks/x",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def test_cors_allows_the_listed_origin(cors_app, alice):
    response = preflight(cors_app, APP_ORIGIN, headers="Authorization, If-Match")
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, If-Match"

    client = cors_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = alice.environ_base["HTTP_AUTHORIZATION"]
    response = client.get("/api/alice/tasks", headers={"Origin": APP_ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert {h.strip() for h in exposed.split(",")} == {
        "ETag",
        "Idempotent-Replayed",
        "Location",
        "X-Request-ID",
    }


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example.com", "http://app.example.com", "https://app.example.com.evil.io",
     "null", "https://sub.app.example.com"],
)  # fmt: skip
def test_cors_refuses_other_origins(cors_app, alice, origin):
    assert "Access-Control-Allow-Origin" not in preflight(cors_app, origin).headers
    client = cors_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = alice.environ_base["HTTP_AUTHORIZATION"]
    response = client.get("/api/alice/tasks", headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_no_cors_at_all_by_default(app):
    response = preflight(app, APP_ORIGIN)
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"JWT_SECRET": None}, "set JWT_SECRET or JWT_JWKS_URL: no token can be verified"),
        ({"JWT_SECRET": "short-secret"}, "JWT_SECRET must be at least 32 bytes"),
        ({"JWT_SECRET_PREVIOUS": "short"}, "JWT_SECRET_PREVIOUS must be at least 32 bytes"),
        (
            {"DATABASE_URL": "sqlite:///prod.sqlite3"},
            "ENVIRONMENT=production needs PostgreSQL, not SQLite",
        ),
        ({"DATABASE_URL": None}, "DATABASE_URL is required when ENVIRONMENT=production"),
        ({"JWT_ALGORITHMS": ["none"]}, "JWT_ALGORITHMS: unsupported algorithm(s) none"),
        (
            {"JWT_SECRET": None, "JWT_JWKS_URL": "https://app.example.com/api/auth/jwks"},
            "set SECRET_KEY (it signs list cursors) when only JWT_JWKS_URL is set",
        ),
    ],
)
def test_production_refuses_weak_settings(settings, message):
    config = {**base_config(PG_URL), "TESTING": False, "ENVIRONMENT": "production"}
    with pytest.raises(ConfigError) as raised:
        create_app({**config, "SECRET_KEY": None, **settings})
    assert str(raised.value) == message


def test_production_starts_with_sound_settings():
    config = {**base_config(PG_URL), "TESTING": False, "ENVIRONMENT": "production"}
    app = create_app({**config, "JWT_SECRET": TEST_SECRET})
    assert app.debug is False and app.testing is False


def test_errors_show_no_debug_page_or_traceback(make_app):
    app = make_app(TESTING=False, DEBUG=False, PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail: password=hunter2 at /srv/app.py line 3")

    @app.get("/abort")
    def aborted():
        abort(418)

    client = app.test_client()
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    assert response.json["error"]["code"] == "INTERNAL_ERROR"
    assert response.json["error"]["message"] == "An internal error occurred."
    text = response.get_data(as_text=True)
    for leak in ("Traceback", "hunter2", "RuntimeError", "app.py", "werkzeug", "<html"):
        assert leak not in text

    # An HTTP error outside the contract's table keeps its own status, in the envelope.
    teapot = client.get("/abort")
    assert teapot.status_code == 418
    assert teapot.headers["Content-Type"] == "application/json"
    assert (teapot.json["error"]["code"], teapot.json["error"]["message"]) == (
        "IM_A_TEAPOT",
        "I'm a Teapot",
    )
    assert "<html" not in teapot.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/nope", "/api/alice/tasks/x/y", "/console", "/.env"])
def test_unknown_paths_are_json_404(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json["error"]["code"] == "NOT_FOUND"


def test_protective_headers_on_answers_and_errors(alice, anonymous):
    for response in (alice.get("/api/alice/tasks"), anonymous.get("/api/alice/tasks")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
    assert anonymous.get("/healthz").headers["X-Content-Type-Options"] == "nosniff"
