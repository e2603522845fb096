"""Service endpoints without a token: liveness, readiness, the OpenAPI document and docs"""

import uuid
from pathlib import Path

import pytest
import swagger_ui_bundle
from conftest import base_config, create_postgres_database, drop_postgres_database

from todo import create_app
from todo.extensions import db
from todo.schema_version import expected_heads


def test_healthz(anonymous):
    response = anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json["data"] == {"status": "ok"}
    assert response.json["meta"]["request_id"] == response.headers["X-Request-ID"]


def test_readyz_at_the_latest_migration(anonymous):
    response = anonymous.get("/readyz")

    assert response.status_code == 200
    assert response.json["data"] == {"status": "ready"}


@pytest.fixture
def unmigrated_app(backend, tmp_path):
    if backend == "sqlite":
        app = create_app(base_config(f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
        yield app
    else:
        name = f"todo_unmigrated_{uuid.uuid4().hex[:12]}"
        app = create_app(base_config(create_postgres_database(name)))
        yield app
        with app.app_context():
            db.engine.dispose()
        drop_postgres_database(name)


def test_readyz_is_503_with_the_reason_on_an_unmigrated_database(unmigrated_app):
    response = unmigrated_app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    error = response.json["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    heads = sorted(expected_heads(unmigrated_app))
    assert error["message"] == (
        f"Not ready: schema at no migration, expected {heads}: run flask db upgrade."
    )


UNREACHABLE = {
    "sqlite": "sqlite:////nonexistent-todo-dir/sub/todo.sqlite3",
    "postgresql": "postgresql://postgres@127.0.0.1:1/todo",  # nothing listens on port 1
}


@pytest.fixture
def unreachable_app(backend):
    app = create_app({**base_config(UNREACHABLE[backend]), "TESTING": False})
    yield app
    with app.app_context():
        db.engine.dispose()


def test_readyz_is_503_when_the_database_is_unreachable(unreachable_app):
    response = unreachable_app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    error = response.json["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert error["message"] == "Not ready: database unreachable (OperationalError)."
    assert "127.0.0.1" not in response.get_data(as_text=True)
    assert "nonexistent" not in response.get_data(as_text=True)


def test_healthz_answers_while_the_database_is_unreachable(unreachable_app):
    response = unreachable_app.test_client().get("/healthz")

    assert response.status_code == 200
    assert response.json["data"] == {"status": "ok"}


def test_api_is_503_when_the_database_is_unreachable(unreachable_app, client_for):
    client = unreachable_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = client_for("alice").environ_base[
        "HTTP_AUTHORIZATION"
    ]

    for response in (
        client.get("/api/alice/tasks"),
        client.post("/api/alice/tasks", json={"title": "x"}),
    ):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert "OperationalError" not in response.get_data(as_text=True)


def test_openapi_json_without_a_token(anonymous):
    response = anonymous.get("/openapi.json")

    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.json["info"]["title"] == "todo"
    assert response.json["openapi"] == "3.0.3"


def test_docs_without_a_token_use_local_assets(anonymous):
    response = anonymous.get("/docs")

    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    page = response.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert "/openapi.json" in page
    assert "cdn" not in page.lower() and "unpkg" not in page


def test_docs_assets_serve_swagger_ui_locally(anonymous):
    bundle = Path(swagger_ui_bundle.swagger_ui_path) / "swagger-ui-bundle.js"

    with anonymous.get("/docs/assets/swagger-ui-bundle.js") as response:
        assert response.status_code == 200
        assert response.content_type == "text/javascript; charset=utf-8"
        assert response.get_data() == bundle.read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/nope.js",
        "/docs/assets/../../setup.cfg",
        "/docs/assets/%2e%2e/%2e%2e/setup.cfg",
    ],
)
def test_docs_assets_serve_nothing_else(anonymous, path):
    with anonymous.get(path) as response:
        assert response.status_code == 404
        assert response.content_type == "application/json"
        assert response.json["error"]["code"] == "NOT_FOUND"


def test_an_unsatisfiable_range_on_an_asset_is_416_in_the_envelope(anonymous):
    """An HTTP error the contract's table does not list keeps its status (not a 500)."""
    with anonymous.get("/docs/assets/swagger-ui.css") as whole:
        size = len(whole.get_data())

    response = anonymous.get("/docs/assets/swagger-ui.css", headers={"Range": f"bytes={size}-"})

    assert response.status_code == 416
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Range"] == f"bytes */{size}"
    error = response.json["error"]
    assert (error["code"], error["message"], error["details"]) == (
        "REQUESTED_RANGE_NOT_SATISFIABLE",
        "Requested Range Not Satisfiable",
        None,
    )


def test_flask_inspects_each_view_and_hook_once_not_on_every_request(app, alice):
    """todo.TodoFlask keeps ensure_sync's answers for functions, and nothing per request
    (MethodView's bound methods, new on each request, are not kept)."""
    task_id = alice.post("/api/alice/tasks", json={"title": "a"}).json["data"]["id"]
    for url in ("/api/alice/tasks", f"/api/alice/tasks/{task_id}"):
        assert alice.get(url).status_code == 200
    kept = dict(app._sync_functions)

    for _ in range(20):
        assert alice.get("/api/alice/tasks").status_code == 200
        assert alice.get(f"/api/alice/tasks/{task_id}").status_code == 200

    assert app._sync_functions == kept
    assert kept and all(sync is function for function, sync in kept.items())
