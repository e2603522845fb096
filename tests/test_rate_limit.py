"""Per-user rate limiting: off by default, 429 RATE_LIMITED in the envelope, counted after auth"""

import io
import json
import logging
import uuid

import pytest
import redis
from conftest import make_token
from helpers import skip_unless_required
from runtime_servers import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


def auth(user, **claims):
    return {"Authorization": f"Bearer {make_token(user, **claims)}"}


def test_no_limit_by_default(app):
    client = app.test_client()

    for _ in range(5):
        response = client.get("/api/alice/tasks", headers=auth("alice"))
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers


def test_over_the_limit_is_429_in_the_envelope_with_retry_after(make_app):
    client = make_app(RATE_LIMIT="3/minute", RATE_LIMIT_KEY_PREFIX=uuid.uuid4().hex).test_client()

    statuses = [client.get("/api/alice/tasks", headers=auth("alice")).status_code for _ in range(3)]
    response = client.post("/api/alice/tasks", json={"title": "t"}, headers=auth("alice"))

    assert statuses == [200, 200, 200]
    assert response.status_code == 429
    assert response.content_type == "application/json"
    error = response.json["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_retry_after_only_on_429(make_app):
    client = make_app(RATE_LIMIT="3/minute", RATE_LIMIT_KEY_PREFIX=uuid.uuid4().hex).test_client()

    response = client.get("/api/alice/tasks", headers=auth("alice"))

    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert "Retry-After" not in response.headers


def test_the_budget_is_per_user(make_app):
    client = make_app(RATE_LIMIT="2/minute", RATE_LIMIT_KEY_PREFIX=uuid.uuid4().hex).test_client()

    alice = [client.get("/api/alice/tasks", headers=auth("alice")).status_code for _ in range(3)]
    bob = [client.get("/api/bob/tasks", headers=auth("bob")).status_code for _ in range(2)]

    assert alice == [200, 200, 429]
    assert bob == [200, 200]


def test_the_limit_is_checked_after_authentication(make_app):
    client = make_app(RATE_LIMIT="2/minute", RATE_LIMIT_KEY_PREFIX=uuid.uuid4().hex).test_client()
    forged = {"Authorization": "Bearer not-a-token"}

    # Unauthenticated and wrong-user requests neither spend alice's budget nor see a 429.
    refused = [client.get("/api/alice/tasks", headers=forged).status_code for _ in range(3)]
    refused.append(client.get("/api/alice/tasks", headers=auth("bob")).status_code)
    mine = [client.get("/api/alice/tasks", headers=auth("alice")).status_code for _ in range(3)]
    after = client.get("/api/alice/tasks", headers=forged).status_code

    assert refused == [401, 401, 401, 403]
    assert mine == [200, 200, 429]
    assert after == 401


def test_service_endpoints_are_not_limited(make_app):
    client = make_app(RATE_LIMIT="1/minute", RATE_LIMIT_KEY_PREFIX=uuid.uuid4().hex).test_client()

    assert [client.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]


@pytest.fixture
def redis_prefix():
    """A key prefix of this test alone on the shared Redis; its keys are removed after."""
    server = redis.Redis.from_url(REDIS_URL)
    try:
        server.ping()
    except redis.exceptions.ConnectionError:
        skip_unless_required(
            "REQUIRE_REDIS", "no Redis at 127.0.0.1:6379 (the python-svc machine and CI run one)"
        )
    prefix = f"todo-test-{uuid.uuid4().hex}"
    yield prefix
    for key in server.scan_iter(f"*{prefix}*"):
        server.delete(key)
    server.close()


def test_redis_storage_is_shared_by_workers(make_app, redis_prefix):
    settings = {
        "RATE_LIMIT": "3/minute",
        "RATE_LIMIT_STORAGE_URL": REDIS_URL,
        "RATE_LIMIT_KEY_PREFIX": redis_prefix,
    }
    # Two apps stand for two gunicorn workers: one budget between them.
    first, second = make_app(**settings).test_client(), make_app(**settings).test_client()

    statuses = [
        (first if n % 2 else second).get("/api/alice/tasks", headers=auth("alice")).status_code
        for n in range(4)
    ]

    assert statuses == [200, 200, 200, 429]
    assert any(redis.Redis.from_url(REDIS_URL).scan_iter(f"*{redis_prefix}*"))


def test_an_unreachable_storage_serves_unlimited_rather_than_failing(make_app):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = make_app(RATE_LIMIT="1/minute", RATE_LIMIT_STORAGE_URL=dead).test_client()
    buffer = io.StringIO()
    logging.getLogger("flask-limiter").handlers[0].setStream(buffer)

    response = client.get("/api/alice/tasks", headers=auth("alice"))
    statuses = [client.get("/api/alice/tasks", headers=auth("alice")).status_code for _ in range(2)]

    assert [response.status_code, *statuses] == [200, 200, 200]
    errors = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert errors[0]["logger"] == "flask-limiter"
    assert errors[0]["level"] == "ERROR"
    assert errors[0]["request_id"] == response.headers["X-Request-ID"]
