"""Database outages: 503 with Retry-After in bounded time, then recovery without a restart

The outage tests run a real gunicorn against a throwaway PostgreSQL (tests/servers.py)
that they stop, black-hole and restart; the HTTP client's 10-second timeout is the
bound a request must answer within (a hang fails the test with a timeout error).
The statement-timeout tests use the shared test server.
"""

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import sqlalchemy as sa
from conftest import make_token
from servers import BlackHole, Gunicorn

from todo import config as settings
from todo import tasks as task_service
from todo.extensions import db

TOKEN = {"Authorization": f"Bearer {make_token('alice', ttl=3600)}"}


@pytest.fixture
def gunicorn(postgres):
    server = Gunicorn(postgres[1], workers=2)
    yield server
    server.stop()


def api_requests(task_id):
    """(method, path, body, status when the database answers) of the six operations."""
    base = "/api/alice/tasks"
    return [
        ("GET", base, None, 200),
        ("POST", base, {"title": "During the outage"}, 201),
        ("GET", f"{base}/{task_id}", None, 200),
        ("PUT", f"{base}/{task_id}", {"title": "x"}, 200),
        ("PATCH", f"{base}/{task_id}/complete", None, 200),
        ("DELETE", f"{base}/{task_id}", None, 204),
    ]


def assert_unavailable(response):
    status, headers, body = response
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert headers["Content-Type"] == "application/json"
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert body["error"]["message"] == "The service is temporarily unavailable; retry later."
    assert "psycopg" not in str(body) and "SELECT" not in str(body)


def test_default_timeouts_bound_a_request_under_10_seconds():
    config = settings.from_env({})
    # Sync gunicorn workers serve one request at a time, so a request never waits
    # for the pool; connecting is what an outage can stretch: 5 s, under 10.
    assert config["DB_CONNECT_TIMEOUT"] == 5
    assert config["DB_POOL_TIMEOUT"] == 10
    options = settings.engine_options(config, sa.make_url("postgresql+psycopg://h/d"))
    assert "pool_pre_ping" not in options  # todo/extensions.py checks without a round trip
    assert options["connect_args"]["connect_timeout"] == 5


def test_stopped_database_503_then_the_same_workers_recover(postgres, gunicorn):
    server, _ = postgres
    status, _, body = gunicorn.request("POST", "/api/alice/tasks", {"title": "t"}, TOKEN)
    assert status == 201
    task_id = body["data"]["id"]
    assert gunicorn.request("GET", "/readyz")[0] == 200
    workers = gunicorn.workers()

    server.stop()
    try:
        for _ in range(2):  # twice: each worker's pool meets the outage
            for method, path, payload, _ in api_requests(task_id):
                assert_unavailable(gunicorn.request(method, path, payload, TOKEN))
        status, headers, body = gunicorn.request("GET", "/readyz")
        assert status == 503
        assert body["error"]["message"] == "Not ready: database unreachable (OperationalError)."
        assert gunicorn.request("GET", "/healthz")[0] == 200
    finally:
        server.start()

    # The checkout check (todo/extensions.py) replaces the dead pooled connections:
    # the first requests succeed.
    for _ in range(6):
        status, _, body = gunicorn.request("GET", f"/api/alice/tasks/{task_id}", None, TOKEN)
        assert status == 200
        assert body["data"]["title"] == "t"
    assert gunicorn.request("GET", "/readyz")[0] == 200
    assert gunicorn.workers() == workers


def test_a_database_restart_between_two_requests_shows_no_error(postgres, gunicorn):
    """Every worker holds pooled connections that the restart closed; none is used."""
    server, _ = postgres
    status, _, body = gunicorn.request("POST", "/api/alice/tasks", {"title": "t"}, TOKEN)
    assert status == 201
    task_id = body["data"]["id"]
    for _ in range(2):  # concurrently, so that both workers open connections
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda path: gunicorn.request("GET", path, None, TOKEN),
                    [f"/api/alice/tasks/{task_id}", "/api/alice/tasks"] * 4,
                )
            )
        assert [status for status, _, _ in answers] == [200] * 8

    server.stop()
    server.start()

    for method, path, payload, expected in api_requests(task_id)[:-1]:
        status, _, body = gunicorn.request(method, path, payload, TOKEN)
        assert status == expected, (method, path, body)
    for _ in range(6):
        assert gunicorn.request("GET", f"/api/alice/tasks/{task_id}", None, TOKEN)[0] == 200


def test_a_hung_database_answers_503_within_the_default_connect_timeout(postgres, gunicorn):
    server, _ = postgres
    status, _, body = gunicorn.request("POST", "/api/alice/tasks", {"title": "t"}, TOKEN)
    assert status == 201
    workers = gunicorn.workers()

    server.stop()
    hole = BlackHole(server.port)  # accepts the connection, never answers
    try:
        # Both at once, one per worker: each waits out the 5-second connect timeout.
        with ThreadPoolExecutor(2) as pool:
            listing = pool.submit(gunicorn.request, "GET", "/api/alice/tasks", None, TOKEN)
            readiness = pool.submit(gunicorn.request, "GET", "/readyz")
            assert_unavailable(listing.result())
            assert readiness.result()[0] == 503
    finally:
        hole.close()
        server.start()

    status, _, listing = gunicorn.request("GET", "/api/alice/tasks", None, TOKEN)
    assert status == 200
    assert body["data"]["id"] in [task["id"] for task in listing["data"]]
    assert gunicorn.workers() == workers


@pytest.fixture
def backend():
    """The statement timeout is PostgreSQL's."""
    return "postgresql"


def _sleeping_list(seconds):
    def list_page(user_id, **args):
        db.session.execute(sa.text("SELECT pg_sleep(:s)"), {"s": seconds})
        raise AssertionError("the statement timeout did not cancel pg_sleep")

    return list_page


@pytest.mark.parametrize(
    "engine_options",
    [{}, {"connect_args": {"prepare_threshold": None}}],
    ids=["startup-option", "per-transaction-only (PgBouncer)"],
)
def test_a_slow_statement_is_cancelled_and_answers_503(make_app, monkeypatch, engine_options):
    app = make_app(DB_STATEMENT_TIMEOUT_MS=200, SQLALCHEMY_ENGINE_OPTIONS=engine_options)
    client = app.test_client()
    monkeypatch.setattr(task_service, "list_page", _sleeping_list(5))

    response = client.get("/api/alice/tasks", headers=TOKEN)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    with app.app_context():
        with pytest.raises(sa.exc.OperationalError) as raised:
            db.session.execute(sa.text("SELECT pg_sleep(5)"))
        assert isinstance(raised.value.orig, psycopg.errors.QueryCanceled)
        db.session.rollback()
        # The connection stays usable for the next statement.
        assert db.session.scalar(sa.text("SELECT 1")) == 1


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection")),
        sa.exc.InterfaceError("SELECT", {}, Exception("connection already closed")),
        sa.exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"),
    ],
    ids=["operational", "interface", "pool-timeout"],
)
def test_each_kind_of_database_outage_answers_503_with_retry_after(make_app, monkeypatch, error):
    def unavailable(*args, **kwargs):
        raise error

    monkeypatch.setattr(task_service, "list_page", unavailable)
    client = make_app().test_client()

    response = client.get("/api/alice/tasks", headers=TOKEN)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["error"]["code"] == "SERVICE_UNAVAILABLE"
