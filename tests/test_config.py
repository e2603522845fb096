"""Configuration: database URLs, the instance folder, production refusals, pools"""

import os
import re
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from conftest import TEST_SECRET, make_token

from todo import create_app
from todo.config import ConfigError, development_secret, from_env, normalize_database_url
from todo.extensions import db, drop_if_closed_by_server

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).parent / "flask"
SETTINGS = (
    "DATABASE_URL",
    "JWT_SECRET",
    "JWT_JWKS_URL",
    "JWT_ALGORITHMS",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_USER_CLAIM",
    "SECRET_KEY",
    "ENVIRONMENT",
    "CORS_ORIGINS",
    "INSTANCE_PATH",
    "FLASK_APP",
    "MAX_CONTENT_LENGTH",
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "DB_POOL_RECYCLE",
    "DB_POOL_TIMEOUT",
    "DB_PREPARED_STATEMENTS",
    "PAGE_CACHE_MB",
)
PG_URL = "postgresql://todo:p%40ss@127.0.0.1:1/todo"  # nothing listens on port 1


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No configuration in the environment; the instance folder is a temp folder."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    return tmp_path / "instance"


def build(**config):
    app = create_app({"LOG_LEVEL": "WARNING", **config})
    return app


def engine_of(app):
    with app.app_context():
        return db.engine


# DATABASE_URL


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u:p@h/d?sslmode=require", "postgresql+psycopg://u:p@h/d?sslmode=require"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:////tmp/x.sqlite3", "sqlite:////tmp/x.sqlite3"),
        ("sqlite:///relative.sqlite3", "sqlite:///relative.sqlite3"),
    ],
)
def test_database_urls_are_normalised(given, expected):
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_postgresql_urls_use_psycopg_3_without_connecting(clean_env, scheme):
    app = build(DATABASE_URL=f"{scheme}://todo:p%40ss@127.0.0.1:1/todo")

    url = engine_of(app).url
    assert url.drivername == "postgresql+psycopg"
    assert url.password == "p@ss"
    assert url.port == 1


def test_neon_pooler_hosts_get_no_prepared_statements_or_startup_options(clean_env):
    app = build(DATABASE_URL="postgresql://u:p@ep-x-pooler.eu.aws.neon.tech/db?sslmode=require")

    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"]["prepare_threshold"] is None
    assert "options" not in options["connect_args"]
    assert engine_of(app).url.query == {"sslmode": "require"}


@pytest.mark.parametrize(
    "value", ["no", "off", "0", "false", "NO", "Off", "FALSE", "none", " false", "off "]
)
def test_db_prepared_statements_off_from_the_environment_turns_them_off(
    clean_env, monkeypatch, value
):
    monkeypatch.setenv("DB_PREPARED_STATEMENTS", value)

    app = build(DATABASE_URL=PG_URL)

    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["prepare_threshold"] is None


@pytest.mark.parametrize("value", [None, "", " ", "true", "1", "yes"])
def test_prepared_statements_stay_on_unless_turned_off(clean_env, monkeypatch, value):
    if value is not None:
        monkeypatch.setenv("DB_PREPARED_STATEMENTS", value)

    app = build(DATABASE_URL=PG_URL)

    assert "prepare_threshold" not in app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]


def test_direct_postgresql_gets_timeouts(clean_env):
    app = build(DATABASE_URL=PG_URL)

    connect_args = app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]
    assert connect_args["connect_timeout"] == 5
    assert connect_args["options"] == "-c statement_timeout=5000"
    assert "prepare_threshold" not in connect_args


def test_default_database_is_a_sqlite_file_in_the_instance_folder(clean_env):
    app = build()

    engine = engine_of(app)
    assert engine.url.drivername == "sqlite"
    assert engine.url.database == str(clean_env / "todo.sqlite3")
    assert Path(app.instance_path) == clean_env


@pytest.mark.parametrize("url", [None, "sqlite:///other.sqlite3"])
def test_sqlite_connections_use_wal_and_foreign_keys(clean_env, url):
    app = build(DATABASE_URL=url)

    with app.app_context(), db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        database = db.engine.url.database
    assert Path(database).parent == clean_env
    db_engine = engine_of(app)
    db_engine.dispose()


def test_foreign_keys_are_enforced_on_sqlite(clean_env):
    app = build()

    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id))"
        )
    with app.app_context(), pytest.raises(sa.exc.IntegrityError), db.engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO child (parent_id) VALUES (42)")
    engine_of(app).dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_works(clean_env, url):
    app = build(DATABASE_URL=url, JWT_SECRET=TEST_SECRET)
    with app.app_context():
        flask_migrate.upgrade()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token('alice')}"

    created = client.post("/api/alice/tasks", json={"title": "in memory"})

    assert created.status_code == 201
    assert client.get("/api/alice/tasks").json["meta"]["total"] == 1
    assert isinstance(engine_of(app).pool, sa.pool.StaticPool)
    engine_of(app).dispose()


# Development secret


def test_development_with_no_configuration_creates_and_keeps_a_secret(clean_env):
    first = build()
    secret_file = clean_env / "dev-jwt-secret"

    assert secret_file.is_file()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)  # 32 random bytes, as hex
    assert first.config["JWT_SECRET"] == secret
    assert first.config["ENVIRONMENT"] == "development"
    second = build()
    assert second.config["JWT_SECRET"] == secret
    assert secret_file.read_text().strip() == secret


def test_processes_starting_together_agree_on_one_development_secret(tmp_path):
    barrier = threading.Barrier(8)

    def start():
        barrier.wait()
        return development_secret(str(tmp_path))

    with ThreadPoolExecutor(8) as pool:
        secrets = list(pool.map(lambda _: start(), range(8)))

    assert len(set(secrets)) == 1 and re.fullmatch(r"[0-9a-f]{64}", secrets[0])
    assert [p.name for p in tmp_path.iterdir()] == ["dev-jwt-secret"]


def test_the_development_secret_verifies_its_tokens(clean_env):
    app = build()
    token = make_token("dev", secret=app.config["JWT_SECRET"])

    with app.app_context():
        verifier = app.extensions["todo.tokens"]
        assert verifier.verify(token) == "dev"


def test_instance_path_from_config_wins(clean_env, tmp_path):
    app = build(INSTANCE_PATH=str(tmp_path / "elsewhere"))

    assert Path(app.instance_path) == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "dev-jwt-secret").is_file()


# Refusals


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"JWT_SECRET": TEST_SECRET}, "DATABASE_URL is required when ENVIRONMENT=production"),
        (
            {"DATABASE_URL": "sqlite:///x.sqlite3", "JWT_SECRET": TEST_SECRET},
            "ENVIRONMENT=production needs PostgreSQL, not SQLite",
        ),
        ({"DATABASE_URL": PG_URL}, "set JWT_SECRET or JWT_JWKS_URL: no token can be verified"),
        ({"DATABASE_URL": PG_URL, "JWT_SECRET": "x" * 31}, "JWT_SECRET must be at least 32 bytes"),
    ],
)
def test_production_refusals(clean_env, config, message):
    with pytest.raises(ConfigError) as raised:
        build(ENVIRONMENT="production", **config)

    assert str(raised.value) == message
    assert not (clean_env / "dev-jwt-secret").exists()


@pytest.mark.parametrize(
    ("origins", "message"),
    [
        (
            ["https://app.example", "app.example", "https://b.example/path"],
            "CORS_ORIGINS: 'app.example' is not scheme://host[:port];"
            " 'https://b.example/path' must have no path, query or credentials (an origin)",
        ),
        (["*"], "CORS_ORIGINS: '*' lets every site read the answers"),
        (
            ["https://*.example.com"],
            "CORS_ORIGINS: 'https://*.example.com': the host must be a name or an address,"
            " not a pattern",
        ),
        (["http://[::1"], "CORS_ORIGINS: 'http://[::1' is not scheme://host[:port]"),
        (
            ["https://app.example:"],
            "CORS_ORIGINS: 'https://app.example:' is not scheme://host[:port]",
        ),
        (
            ["https://app.example:443", "http://app.example:80"],
            "CORS_ORIGINS: 'https://app.example:443': browsers send it without the default"
            " port :443; 'http://app.example:80': browsers send it without the default port :80",
        ),
        (
            ["http://[0:0::1]:3000"],
            "CORS_ORIGINS: 'http://[0:0::1]:3000': browsers send the address as [::1]",
        ),
        (
            ["https://app.example:99999"],
            "CORS_ORIGINS: 'https://app.example:99999' is not scheme://host[:port]",
        ),
    ],
)
def test_cors_origins_must_be_origins(clean_env, origins, message):
    with pytest.raises(ConfigError) as raised:
        build(CORS_ORIGINS=origins)

    assert str(raised.value) == message
    assert not clean_env.exists()  # refused before the development key is written


def test_a_cors_origin_with_credentials_is_refused(clean_env):
    with pytest.raises(ConfigError) as raised:
        build(CORS_ORIGINS=["https://user@app.example"])

    assert str(raised.value) == (
        "CORS_ORIGINS: 'https://user@app.example' must have no path, query or credentials"
        " (an origin)"
    )
    assert not clean_env.exists()  # refused before the development key is written


def test_hs512_needs_a_previous_secret_of_64_bytes_in_production(clean_env):
    production = {
        "ENVIRONMENT": "production",
        "DATABASE_URL": PG_URL,
        "JWT_SECRET": "s" * 64,
        "JWT_ALGORITHMS": ["HS512"],
    }

    with pytest.raises(ConfigError) as raised:
        build(**production, JWT_SECRET_PREVIOUS="p" * 63)  # enough for HS256, not for HS512

    assert str(raised.value) == "HS512 needs a JWT_SECRET_PREVIOUS of at least 64 bytes"
    app = build(**production, JWT_SECRET_PREVIOUS="p" * 64)
    assert app.config["JWT_ALGORITHMS"] == ["HS512"]


def test_production_with_a_key_and_postgresql_starts_without_a_database(clean_env):
    app = build(ENVIRONMENT="production", DATABASE_URL=PG_URL, JWT_SECRET="s" * 32)

    assert app.config["ENVIRONMENT"] == "production"


def test_test_environment_also_needs_a_key(clean_env):
    with pytest.raises(ConfigError) as raised:
        build(ENVIRONMENT="test")

    assert str(raised.value) == "set JWT_SECRET or JWT_JWKS_URL: no token can be verified"
    assert not clean_env.exists()  # no development key outside development


def test_unknown_environment_is_refused(clean_env):
    with pytest.raises(ConfigError) as raised:
        build(ENVIRONMENT="prod")

    assert (
        str(raised.value) == "ENVIRONMENT must be one of development, test, production, not 'prod'"
    )


NOT_A_DATABASE_URL = "DATABASE_URL must be a postgresql:// or sqlite:/// URL"


def production_env(tmp_path, **settings):
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(ENVIRONMENT="production", INSTANCE_PATH=str(tmp_path), **settings)
    return env


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "DATABASE_URL is required when ENVIRONMENT=production"),
        (
            {"DATABASE_URL": "sqlite:///todo.sqlite3", "JWT_SECRET": "s" * 32},
            "ENVIRONMENT=production needs PostgreSQL, not SQLite",
        ),
        ({"DATABASE_URL": PG_URL}, "set JWT_SECRET or JWT_JWKS_URL: no token can be verified"),
        ({"DATABASE_URL": PG_URL, "JWT_SECRET": "short"}, "JWT_SECRET must be at least 32 bytes"),
        (
            {"DATABASE_URL": PG_URL, "JWT_SECRET": "s" * 32, "DB_POOL_SIZE": "ten"},
            "DB_POOL_SIZE must be an integer, not 'ten'",
        ),
        # Not a URL, a bad port, a bad IPv6 host (the password is not repeated), no driver.
        ({"DATABASE_URL": "todo.sqlite3"}, NOT_A_DATABASE_URL),
        ({"DATABASE_URL": "postgresql://todo:s3cret@127.0.0.1:port/todo"}, NOT_A_DATABASE_URL),
        ({"DATABASE_URL": "postgresql://todo:s3cret@[::1/todo"}, NOT_A_DATABASE_URL),
        ({"DATABASE_URL": "mysql://todo@127.0.0.1/todo"}, NOT_A_DATABASE_URL),
        (
            {"DATABASE_URL": PG_URL, "JWT_JWKS_URL": "https://[::1/jwks"},
            "JWT_JWKS_URL must be an http(s) URL, not 'https://[::1/jwks'",
        ),
        (
            {"DATABASE_URL": PG_URL, "JWT_JWKS_URL": "https://idp.example:99999/jwks"},
            "JWT_JWKS_URL must be an http(s) URL, not 'https://idp.example:99999/jwks'",
        ),
    ],
)
def test_wsgi_prints_one_line_and_exits_non_zero(tmp_path, settings, message):
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=production_env(tmp_path, **settings),
        timeout=60,
        check=False,
    )

    assert result.returncode == 4
    assert result.stderr == f"configuration error: {message}\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("arguments", "settings", "message"),
    [
        (
            ["--help"],
            {"ENVIRONMENT": "production", "DATABASE_URL": PG_URL},
            "set JWT_SECRET or JWT_JWKS_URL: no token can be verified",
        ),
        (
            ["tasks", "stats"],
            {"LOG_LEVEL": "verbose"},
            "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'VERBOSE'",
        ),
    ],
)
def test_flask_command_prints_one_line_and_exits_non_zero(tmp_path, arguments, settings, message):
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(INSTANCE_PATH=str(tmp_path), **settings)

    result = subprocess.run(
        [str(FLASK), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 4
    assert result.stderr == f"configuration error: {message}\n"
    assert "Traceback" not in result.stdout + result.stderr


def test_gunicorn_stops_instead_of_respawning_workers(tmp_path):
    gunicorn = Path(sys.executable).parent / "gunicorn"

    result = subprocess.run(
        # One worker: when several fail together, gunicorn 27's arbiter raises its
        # HaltServer a second time while halting and prints a traceback (exit 1).
        [str(gunicorn), "-w", "1", "-b", "127.0.0.1:0", "--no-control-socket", "wsgi:app"],
        cwd=ROOT,
        env=production_env(tmp_path, DATABASE_URL=PG_URL, JWT_SECRET="short"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 4
    assert "configuration error: JWT_SECRET must be at least 32 bytes" in result.stderr
    assert "App failed to load" in result.stderr
    assert "Traceback" not in result.stderr


def test_wsgi_imports_in_production_without_a_database(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi; print(wsgi.app.config['ENVIRONMENT'])"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=production_env(tmp_path, DATABASE_URL=PG_URL, JWT_SECRET="s" * 32),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "production\n"


# Values from the environment


def test_settings_from_the_environment(clean_env, monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", " https://a.example , https://b.example,,")
    monkeypatch.setenv("JWT_ALGORITHMS", "HS256, HS512")
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "1024")
    monkeypatch.setenv("JWT_LEEWAY_SECONDS", "5")
    monkeypatch.setenv("ENVIRONMENT", " Production ")

    settings = from_env()

    assert settings["CORS_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert settings["JWT_ALGORITHMS"] == ["HS256", "HS512"]
    assert settings["MAX_CONTENT_LENGTH"] == 1024
    assert settings["JWT_LEEWAY_SECONDS"] == 5
    assert settings["ENVIRONMENT"] == "production"


def test_an_empty_variable_is_as_if_unset(clean_env):
    """.env.example lists every variable, empty where the default applies."""
    empty = {name: "" for name in from_env({}) if name != "ENVIRONMENT"}

    assert from_env(empty) == from_env({})


def test_an_empty_environment_is_refused(clean_env, monkeypatch):
    """Not quietly development: `-e ENVIRONMENT=` would undo the image's production."""
    monkeypatch.setenv("ENVIRONMENT", "")

    with pytest.raises(ConfigError) as raised:
        build()

    assert str(raised.value) == "ENVIRONMENT must be one of development, test, production, not ''"


def test_defaults_of_the_contract(clean_env):
    settings = from_env()

    assert settings["ENVIRONMENT"] == "development"
    assert settings["JWT_USER_CLAIM"] == "sub"
    assert settings["JWT_LEEWAY_SECONDS"] == 30
    assert settings["MAX_CONTENT_LENGTH"] == 65536
    assert settings["CORS_ORIGINS"] == []
    assert settings["LOG_LEVEL"] == "INFO"
    assert (
        settings["DB_POOL_SIZE"],
        settings["DB_MAX_OVERFLOW"],
        settings["DB_POOL_RECYCLE"],
        settings["DB_POOL_TIMEOUT"],
    ) == (10, 20, 1800, 10)
    assert settings["PAGE_CACHE_MB"] == 48


@pytest.mark.parametrize("url", [PG_URL, None])
def test_pool_settings_come_from_db_pool_variables(clean_env, monkeypatch, url):
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "4")
    monkeypatch.setenv("DB_POOL_RECYCLE", "60")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "7")

    pool = engine_of(build(DATABASE_URL=url)).pool

    assert isinstance(pool, sa.pool.QueuePool)
    assert pool.size() == 3
    assert pool._max_overflow == 4
    assert pool._recycle == 60
    assert pool._timeout == 7
    # No ping round trip: the checkout hook drops connections the server closed.
    assert pool._pre_ping is False
    engine = engine_of(build(DATABASE_URL=url))
    assert sa.event.contains(engine, "checkout", drop_if_closed_by_server) == (
        engine.dialect.name == "postgresql"
    )


def test_default_pool_settings(clean_env):
    pool = engine_of(build(DATABASE_URL=PG_URL)).pool

    assert (pool.size(), pool._max_overflow, pool._recycle, pool._timeout) == (10, 20, 1800, 10)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DB_POOL_SIZE", "-1", "DB_POOL_SIZE must be at least 0, not '-1'"),
        ("DB_MAX_OVERFLOW", "-10", "DB_MAX_OVERFLOW must be at least -1, not '-10'"),
        ("DB_POOL_RECYCLE", "-2", "DB_POOL_RECYCLE must be at least -1, not '-2'"),
        ("DB_POOL_TIMEOUT", "-1", "DB_POOL_TIMEOUT must be at least 0, not '-1'"),
        ("DB_CONNECT_TIMEOUT", "-5", "DB_CONNECT_TIMEOUT must be at least 0, not '-5'"),
        ("DB_STATEMENT_TIMEOUT_MS", "-1", "DB_STATEMENT_TIMEOUT_MS must be at least 0, not '-1'"),
        ("MAX_CONTENT_LENGTH", "0", "MAX_CONTENT_LENGTH must be at least 1, not '0'"),
        ("JWT_LEEWAY_SECONDS", "-30", "JWT_LEEWAY_SECONDS must be at least 0, not '-30'"),
    ],
)
def test_numbers_out_of_their_range_are_refused(name, value, message):
    with pytest.raises(ConfigError) as raised:
        from_env({name: value})

    assert str(raised.value) == message


NUMBER_SETTINGS = (
    "PAGE_CACHE_MB",
    "JWT_JWKS_TIMEOUT_SECONDS",
    "JWT_JWKS_CACHE_SECONDS",
    "JWT_JWKS_MIN_REFRESH_SECONDS",
)


@pytest.mark.parametrize("name", NUMBER_SETTINGS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-1", "must be a non-negative number"),
        ("-0.5", "must be a non-negative number"),
        ("inf", "must be a non-negative number"),
        ("Infinity", "must be a non-negative number"),
        ("nan", "must be a non-negative number"),
        ("lots", "must be a number"),
    ],
)
def test_number_settings_refuse_negatives_infinity_and_nan(
    clean_env, monkeypatch, name, value, problem
):
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError) as raised:
        from_env()

    assert str(raised.value) == f"{name} {problem}, not {value!r}"


@pytest.mark.parametrize("name", NUMBER_SETTINGS)
def test_zero_is_taken_for_number_settings(clean_env, monkeypatch, name):
    monkeypatch.setenv(name, "0")

    assert from_env()[name] == 0


def test_page_cache_mb_zero_from_the_environment_turns_the_page_cache_off(clean_env, monkeypatch):
    monkeypatch.setenv("PAGE_CACHE_MB", "0")

    app = build()

    assert app.config["PAGE_CACHE_MB"] == 0
    assert app.extensions["todo.pages"].max_bytes == 0


@pytest.mark.parametrize(
    ("given", "level"), [("warn", "WARNING"), ("Fatal", "CRITICAL"), (" debug ", "DEBUG")]
)
def test_log_levels_are_read_as_python_logging_reads_them(given, level):
    assert from_env({"LOG_LEVEL": given})["LOG_LEVEL"] == level


def test_the_lowest_numbers_allowed_are_taken():
    lowest = {
        "DB_POOL_SIZE": "0",  # SQLAlchemy: no limit
        "DB_MAX_OVERFLOW": "-1",  # SQLAlchemy: no limit
        "DB_POOL_RECYCLE": "-1",
        "DB_POOL_TIMEOUT": "0",
        "DB_CONNECT_TIMEOUT": "0",
        "DB_STATEMENT_TIMEOUT_MS": "0",
        "MAX_CONTENT_LENGTH": "1",
        "JWT_LEEWAY_SECONDS": "0",
    }

    settings = from_env(lowest)

    assert {name: settings[name] for name in lowest} == {k: int(v) for k, v in lowest.items()}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"LOG_LEVEL": "VERBOSE"},
            "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'VERBOSE'",
        ),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of json, text, not 'xml'"),
        (
            {"DATABASE_URL": "postgresql+psycopg2://todo@127.0.0.1/todo"},
            "DATABASE_URL: the driver must be psycopg (postgresql://), not 'psycopg2'",
        ),
        (
            {"DATABASE_URL": "postgresql+asyncpg://todo@127.0.0.1/todo"},
            "DATABASE_URL: the driver must be psycopg (postgresql://), not 'asyncpg'",
        ),
        (
            {"DATABASE_URL": "sqlite+pysqlcipher:///todo.sqlite3"},
            "DATABASE_URL: the driver must be psycopg (postgresql://), not 'pysqlcipher'",
        ),
    ],
)
def test_settings_the_app_cannot_run_with_are_refused(clean_env, config, message):
    with pytest.raises(ConfigError) as raised:
        build(**config)

    assert str(raised.value) == message


def test_a_development_secret_that_cannot_be_kept_is_one_line(clean_env):
    clean_env.mkdir()
    (clean_env / "dev-jwt-secret").mkdir()  # a folder where the file would be

    with pytest.raises(ConfigError) as raised:
        build()

    assert str(raised.value) == (
        f"cannot keep a development secret in {clean_env / 'dev-jwt-secret'}: Is a directory"
    )


def test_an_empty_development_secret_is_refused(clean_env):
    clean_env.mkdir()
    (clean_env / "dev-jwt-secret").write_text("\n")

    with pytest.raises(ConfigError) as raised:
        build()

    assert str(raised.value) == (
        f"{clean_env / 'dev-jwt-secret'} is empty: delete it for a new secret, or set JWT_SECRET"
    )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"METRICS_ENABLED": "true", "METRICS_PORT": "abc"},
            "METRICS_PORT must be an integer, not 'abc'",
        ),
        ({"TRUSTED_PROXY_COUNT": "x"}, "TRUSTED_PROXY_COUNT must be an integer, not 'x'"),
        ({"TRUSTED_PROXY_COUNT": "-1"}, "TRUSTED_PROXY_COUNT must be at least 0, not '-1'"),
    ],
)
def test_settings_of_the_optional_parts_are_checked_too(
    clean_env, monkeypatch, environment, message
):
    # Read when metrics and the proxy fix are set up, not by from_env: a ValueError
    # there was a traceback instead of a configuration error.
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError) as raised:
        build()

    assert str(raised.value) == message
