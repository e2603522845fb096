"""Prometheus metrics: request counts, latency, pool gauges; summed across gunicorn workers"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import TEST_SECRET, make_token
from prometheus_client.parser import text_string_to_metric_families
from runtime_servers import free_port, get, gunicorn
from test_runtime import production_app

from todo.config import ConfigError

METRICS_TOKEN = "metrics-token-for-the-tests"


def samples(text) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped, name, **labels):
    return scraped.get((name, frozenset(labels.items())), 0.0)


def test_metrics_are_off_by_default(app):
    assert app.test_client().get("/metrics").status_code == 404


@pytest.mark.parametrize(
    "value", ["off", "OFF", "no", "No", "none", "None", "false", "FALSE", "0", " off "]
)
def test_metrics_enabled_off_in_the_environment_leaves_no_metrics(make_app, monkeypatch, value):
    monkeypatch.setenv("METRICS_ENABLED", value)

    app = make_app()

    assert app.config["METRICS_ENABLED"] is False
    assert app.test_client().get("/metrics").status_code == 404


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on"])
def test_metrics_enabled_in_the_environment_serves_metrics(make_app, monkeypatch, value):
    monkeypatch.setenv("METRICS_ENABLED", value)
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    monkeypatch.delenv("METRICS_PORT", raising=False)

    response = make_app().test_client().get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")


def test_requests_are_counted_by_route_template_method_and_status(make_app):
    app = make_app(METRICS_ENABLED=True, METRICS_TOKEN=METRICS_TOKEN)
    client = app.test_client()
    route = "/api/<user_id>/tasks"
    scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    before = samples(client.get("/metrics", headers=scrape).get_data(as_text=True))

    client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {make_token('alice')}"})
    client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {make_token('alice')}"})
    client.get("/api/alice/tasks")
    client.get("/no/such/path/123")

    response = client.get("/metrics", headers=scrape)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    after = samples(response.get_data(as_text=True))

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("todo_http_requests_total", route=route, method="GET", status="200") == 2
    assert delta("todo_http_requests_total", route=route, method="GET", status="401") == 1
    assert delta("todo_http_requests_total", route="<unmatched>", method="GET", status="404") == 1
    duration = "todo_http_request_duration_seconds_count"
    assert delta(duration, route=route, method="GET", status="200") == 2
    assert delta(duration, route=route, method="GET", status="401") == 1
    assert value(after, "todo_db_pool_size") == 10  # DB_POOL_SIZE
    assert value(after, "todo_db_pool_checked_out") == 0  # every request gave its connection back
    assert value(after, "todo_db_pool_connections") == 1  # one request at a time, one connection
    assert value(after, "todo_db_pool_overflow") == 0


def test_metrics_need_the_token_when_one_is_set(make_app):
    client = make_app(METRICS_ENABLED=True, METRICS_TOKEN=METRICS_TOKEN).test_client()

    for headers in ({}, {"Authorization": METRICS_TOKEN}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "AUTHENTICATION_REQUIRED"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    for wrong in ("wrong", METRICS_TOKEN[:-1], METRICS_TOKEN + "x", "é"):
        response = client.get("/metrics", headers={"Authorization": f"Bearer {wrong}"})
        assert response.status_code == 401
        assert response.json["error"]["code"] == "INVALID_TOKEN"
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    granted = client.get("/metrics", headers={"Authorization": f"bearer {METRICS_TOKEN}"})
    assert granted.status_code == 200


def test_a_separate_metrics_port_leaves_no_metrics_on_the_api_port(make_app):
    client = make_app(METRICS_ENABLED=True, METRICS_PORT=9100).test_client()

    assert client.get("/metrics").status_code == 404


def test_production_refuses_public_metrics():
    with pytest.raises(ConfigError) as raised:
        production_app(METRICS_ENABLED=True)

    assert str(raised.value) == "METRICS_ENABLED in production needs METRICS_TOKEN or METRICS_PORT"


def test_two_gunicorn_workers_add_up(tmp_path, database_urls):
    """A scrape answered by either worker counts the requests that both served."""
    metrics_dir = tmp_path / "prometheus"
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_urls("sqlite"),
        "JWT_SECRET": TEST_SECRET,
        "WEB_CONCURRENCY": "2",
        "METRICS_ENABLED": "true",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log_path = tmp_path / "gunicorn.log"
    auth = {"Authorization": f"Bearer {make_token('alice')}"}
    scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    with gunicorn(env, log_path) as (url, _), ThreadPoolExecutor(8) as pool:
        sent = 0
        # Both workers have counted something once each has its own file; the kernel
        # spreads concurrent connections, so this takes one or two rounds.
        # At least one round: a worker may create its file before serving anything.
        while sent == 0 or (len(list(metrics_dir.glob("counter_*.db"))) < 2 and sent < 800):
            statuses = list(pool.map(lambda _: get(f"{url}/api/alice/tasks", auth)[0], range(40)))
            assert set(statuses) == {200}
            sent += 40
        assert len(list(metrics_dir.glob("counter_*.db"))) == 2, log_path.read_text()
        scrapes = [samples(get(f"{url}/metrics", scrape)[2].decode()) for _ in range(6)]

    log = log_path.read_text()
    for scraped in scrapes:
        labels = {"route": "/api/<user_id>/tasks", "method": "GET", "status": "200"}
        assert value(scraped, "todo_http_requests_total", **labels) == sent, log
        assert value(scraped, "todo_http_request_duration_seconds_count", **labels) == sent
        assert value(scraped, "todo_db_pool_size") == 2 * 10  # both workers' pools
        assert value(scraped, "todo_db_pool_checked_out") == 0
    # N workers, JSON logs: one access line per request, from both processes
    assert log.count("Booting worker") == 2
    entries = [json.loads(line) for line in log.splitlines()]  # gunicorn's lines too
    api_lines = [entry for entry in entries if entry.get("route") == "/api/<user_id>/tasks"]
    assert len(api_lines) == sent
    assert {entry["user_id"] for entry in api_lines} == {"alice"}
    assert {entry["level"] for entry in entries} == {"INFO"}, log
    assert {entry["logger"] for entry in entries} == {"gunicorn.error", "todo.access"}


def test_metrics_port_is_served_by_the_gunicorn_master(tmp_path, database_urls):
    metrics_port = free_port()
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_urls("sqlite"),
        "JWT_SECRET": TEST_SECRET,
        "WEB_CONCURRENCY": "2",
        "METRICS_ENABLED": "true",
        "METRICS_PORT": str(metrics_port),
    }
    log_path = tmp_path / "gunicorn.log"
    with gunicorn(env, log_path) as (url, _):
        for _ in range(5):
            get(f"{url}/healthz")
        api_port = get(f"{url}/metrics")[0]
        status, _, body = get(f"http://127.0.0.1:{metrics_port}/metrics")

    assert api_port == 404
    assert status == 200
    scraped = samples(body.decode())
    # 5 here, plus the start-up wait's own polls of /healthz: as many as the access log has
    served = [
        entry
        for entry in map(json.loads, log_path.read_text().splitlines())
        if entry.get("route") == "/healthz" and entry.get("status") == 200
    ]
    assert len(served) >= 6
    assert value(
        scraped, "todo_http_requests_total", route="/healthz", method="GET", status="200"
    ) == len(served)
