"""The production runtime: gunicorn settings, .env files, proxies, HSTS, Neon URLs"""

import os
import re
import subprocess
from pathlib import Path

import jwt
import psycopg
import pytest
import sqlalchemy as sa
from conftest import TEST_SECRET, base_config, make_token
from runtime_servers import BIN, ROOT, RUNTIME_VARIABLES, get, gunicorn

from todo import create_app
from todo.config import engine_options, from_env, normalize_database_url


def clean_env(**env):
    environ = {k: v for k, v in os.environ.items() if k not in RUNTIME_VARIABLES}
    environ.update(env)
    return environ


def gunicorn_config(cwd=ROOT, **env) -> dict:
    """The settings that gunicorn.conf.py gives, as `gunicorn --print-config` reports them."""
    args = [str(BIN / "gunicorn"), "--print-config", "wsgi:app"]
    if cwd != ROOT:
        args[1:1] = ["-c", str(ROOT / "gunicorn.conf.py")]
    out = subprocess.run(
        args, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, check=True
    ).stdout
    settings = {}
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            settings[name.strip()] = value.strip()
    return settings


# gunicorn.conf.py


def usable_cores():
    cores = len(os.sched_getaffinity(0))
    cpu_max = Path("/sys/fs/cgroup/cpu.max")
    if cpu_max.exists() and not cpu_max.read_text().startswith("max"):
        quota, period = map(int, cpu_max.read_text().split())
        cores = min(cores, max(1, quota // period))
    return cores


def test_gunicorn_defaults_bind_loopback_8000_and_a_worker_per_core():
    settings = gunicorn_config()

    assert settings["bind"] == "['127.0.0.1:8000']"  # the README's http://127.0.0.1:8000
    assert settings["workers"] == str(usable_cores())
    assert settings["worker_class"] == "sync"
    assert settings["threads"] == "1"
    assert settings["timeout"] == "30"
    assert settings["graceful_timeout"] == "8"
    assert settings["max_requests"] == "200000"
    assert settings["max_requests_jitter"] == "20000"
    assert settings["errorlog"] == "-"
    assert settings["accesslog"] == "None"  # the app writes the access line
    assert settings["forwarded_allow_ips"] == "[]"
    assert settings["preload_app"] == "False"


def test_gunicorn_takes_bind_and_workers_from_the_environment():
    settings = gunicorn_config(HOST="0.0.0.0", PORT="9001", WEB_CONCURRENCY="5")

    assert settings["bind"] == "['0.0.0.0:9001']"
    assert settings["workers"] == "5"


def test_gunicorn_reads_dotenv_and_the_real_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("PORT=9002\nHOST=0.0.0.0\nWEB_CONCURRENCY=3\n")

    settings = gunicorn_config(cwd=tmp_path, HOST="127.0.0.2")

    assert settings["bind"] == "['127.0.0.2:9002']"
    assert settings["workers"] == "3"


def test_flask_reads_dotenv_and_the_real_environment_wins(tmp_path):
    (tmp_path / ".env").write_text(
        "ENVIRONMENT=test\n"
        f"DATABASE_URL=sqlite:///{tmp_path}/todo.sqlite3\n"
        "JWT_SECRET=dotenv-secret-that-is-at-least-32-bytes\n"
        "JWT_ISSUER=from-dotenv\n"
    )
    command = [str(BIN / "flask"), "--app", "wsgi", "tasks", "token", "--user-id", "dot"]
    env = clean_env(PYTHONPATH=str(ROOT), JWT_ISSUER="from-environment")

    token = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()

    claims = jwt.decode(
        token,
        "dotenv-secret-that-is-at-least-32-bytes",
        algorithms=["HS256"],
        issuer="from-environment",
    )
    assert claims["sub"] == "dot"


@pytest.mark.parametrize("backend", ["postgresql"])
def test_preloaded_workers_get_their_own_connections(database_url, tmp_path):
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "JWT_SECRET": TEST_SECRET,
        "WEB_CONCURRENCY": "2",
        "GUNICORN_PRELOAD": "true",
    }
    with gunicorn(env, tmp_path / "gunicorn.log") as (url, _):
        # The master built the app (and its engine) before forking; post_fork
        # disposes the inherited pool in each worker, which then serves its own.
        headers = {"Authorization": f"Bearer {make_token('alice')}"}
        statuses = {get(f"{url}/api/alice/tasks", headers)[0] for _ in range(10)}

    assert statuses == {200}
    log = (tmp_path / "gunicorn.log").read_text()
    assert log.count("Booting worker") == 2
    assert "Traceback" not in log


# Behind a proxy


def whoami_route(app):
    """A /whoami route of `app`; returns what it saw of the last request."""
    seen = {}

    @app.get("/whoami")
    def whoami():
        from flask import request  # noqa: PLC0415

        seen["remote_addr"] = request.remote_addr
        return {}

    return seen


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(make_app):
    app = make_app()
    seen = whoami_route(app)
    client = app.test_client()
    forwarded = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
        "X-Forwarded-For": "198.51.100.7",
    }

    response = client.post(
        "/api/alice/tasks",
        json={"title": "t"},
        headers={"Authorization": f"Bearer {make_token('alice')}", **forwarded},
    )
    client.get("/whoami", headers=forwarded)

    task_id = response.json["data"]["id"]
    assert response.headers["Location"] == f"http://localhost/api/alice/tasks/{task_id}"
    assert seen["remote_addr"] == "127.0.0.1"  # the test client's, not the header's


@pytest.mark.parametrize(
    ("proxies", "forwarded"),
    [
        (
            1,
            {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "api.example.com",
                # a client's own (forged) entry first, then the one our proxy appended
                "X-Forwarded-For": "10.9.9.9, 198.51.100.7",
            },
        ),
        (
            2,
            {
                # The outer proxy ends TLS and appends first; the inner one got http from it.
                "X-Forwarded-Proto": "https, http",
                "X-Forwarded-Host": "api.example.com, todo.internal",
                # a forged entry, the client as the outer proxy saw it, then the outer
                # proxy as the inner one saw it
                "X-Forwarded-For": "10.9.9.9, 198.51.100.7, 10.0.0.2",
            },
        ),
    ],
    ids=["one proxy", "two proxies"],
)
def test_trusted_proxies_give_https_locations_and_the_client_address(make_app, proxies, forwarded):
    app = make_app(TRUSTED_PROXY_COUNT=proxies)
    seen = whoami_route(app)
    client = app.test_client()

    response = client.post(
        "/api/alice/tasks",
        json={"title": "t"},
        headers={"Authorization": f"Bearer {make_token('alice')}", **forwarded},
    )
    client.get("/whoami", headers=forwarded)

    assert response.status_code == 201
    task_id = response.json["data"]["id"]
    assert response.headers["Location"] == f"https://api.example.com/api/alice/tasks/{task_id}"
    assert seen["remote_addr"] == "198.51.100.7"


def production_app(**overrides):
    return create_app(
        {
            **base_config("postgresql://todo@127.0.0.1:1/todo"),  # the factory never connects
            "ENVIRONMENT": "production",
            **overrides,
        }
    )


def test_hsts_only_in_production(app):
    assert "Strict-Transport-Security" not in app.test_client().get("/healthz").headers

    response = production_app().test_client().get("/healthz")

    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


# Neon

NEON_DIRECT = (
    "postgresql://neondb_owner:npg_a1B2c3D4@ep-cool-darkness-a1b2c3d4.us-east-2.aws.neon.tech"
    "/neondb?sslmode=require&channel_binding=require"
)
NEON_POOLED = NEON_DIRECT.replace(".us-east-2", "-pooler.us-east-2")


def connect_args(url, **env):
    config = from_env(env)
    url = sa.make_url(normalize_database_url(url))
    engine = sa.create_engine(url, **engine_options(config, url))
    cargs, kwargs = engine.dialect.create_connect_args(engine.url)
    return {**kwargs, **engine_options(config, url)["connect_args"]}


@pytest.mark.parametrize("url", [NEON_DIRECT, NEON_POOLED])
def test_neon_urls_as_printed_reach_psycopg(url):
    args = connect_args(url)

    assert args["host"].endswith(".us-east-2.aws.neon.tech")
    assert args["dbname"] == "neondb"
    assert args["sslmode"] == "require"
    assert args["channel_binding"] == "require"
    # libpq itself accepts every parameter (it raises on an unknown one); no connection
    # is made. context and prepare_threshold are psycopg's own, not libpq's.
    conninfo = psycopg.conninfo.make_conninfo(
        **{k: v for k, v in args.items() if k not in ("context", "prepare_threshold")}
    )
    parsed = psycopg.conninfo.conninfo_to_dict(conninfo)
    assert parsed["channel_binding"] == "require"
    assert parsed["sslmode"] == "require"


def test_neon_pooler_host_turns_off_prepared_statements_and_startup_options():
    args = connect_args(NEON_POOLED)

    assert args["prepare_threshold"] is None
    assert "options" not in args  # PgBouncer refuses startup parameters it does not track


def test_direct_host_keeps_prepared_statements_unless_told():
    assert "prepare_threshold" not in connect_args(NEON_DIRECT)
    assert connect_args(NEON_DIRECT, DB_PREPARED_STATEMENTS="false")["prepare_threshold"] is None


# .env.example

READERS = {  # how each file reads a variable
    "todo/config.py": r'environ(?:\.get\(|, )"([A-Z_]+)"',
    "todo/hooks.py": r'setting\(app, "([A-Z_]+)"',
    "todo/metrics.py": r'setting\(app, "([A-Z_]+)"',
    "todo/limits.py": r'setting\(app, "([A-Z_]+)"',
    "gunicorn.conf.py": r'(?:_int|_flag|os\.environ\.get)\(\s*["\']([A-Z_]+)["\']',
}


def test_env_example_lists_every_variable_the_code_reads():
    listed = set(re.findall(r"^(?:# )?([A-Z_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    read = {
        name
        for path, pattern in READERS.items()
        for name in re.findall(pattern, (ROOT / path).read_text())
    }

    assert {"DATABASE_URL", "PORT", "METRICS_TOKEN", "RATE_LIMIT"} <= read
    assert read - listed == set()
    assert "JWT_SECRET_PREVIOUS" in listed


def test_env_example_copied_to_dotenv_starts_as_is(tmp_path):
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())

    settings = gunicorn_config(cwd=tmp_path)

    assert settings["bind"] == "['127.0.0.1:8000']"
    assert settings["workers"] == str(usable_cores())
    # prometheus-client takes a PROMETHEUS_MULTIPROC_DIR that is set, even empty, and
    # would write its files into the working folder.
    assert sorted(path.name for path in tmp_path.iterdir()) == [".env"]


def test_env_example_as_docker_env_file_keeps_what_the_image_sets():
    """`docker run --env-file .env` puts each KEY=VALUE line (comments skipped) in the
    real environment, on top of the image's ENV."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    env_file = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    env_file.update(DATABASE_URL="postgresql://todo@db.example/todo", JWT_SECRET="s" * 32)
    image = {"ENVIRONMENT": "production", "HOST": "0.0.0.0", "PORT": "8000"}

    settings = gunicorn_config(**{**image, **env_file})

    assert settings["bind"] == "['0.0.0.0:8000']"
    assert settings["workers"] == str(usable_cores())
    assert "ENVIRONMENT" not in env_file


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"GUNICORN_TIMEOUT": "abc"}, "GUNICORN_TIMEOUT must be an integer at least 0, not 'abc'"),
        ({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS must be an integer at least 1, not '0'"),
        ({"PORT": "70000"}, "PORT must be an integer from 1 to 65535, not '70000'"),
        (
            {"GUNICORN_WORKER_CLASS": "gevent"},
            "GUNICORN_WORKER_CLASS must be sync or gthread, not 'gevent'",
        ),
        (
            {"METRICS_ENABLED": "true", "METRICS_PORT": "-1"},
            "METRICS_PORT must be an integer from 0 to 65535, not '-1'",
        ),
    ],
)
def test_a_bad_gunicorn_setting_is_one_line_and_exit_4(setting, message):
    result = subprocess.run(
        [str(BIN / "gunicorn"), "--print-config", "wsgi:app"],
        cwd=ROOT,
        env=clean_env(**setting),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 4
    assert result.stderr == f"configuration error: {message}\n"
