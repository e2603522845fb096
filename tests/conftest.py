"""Fixtures: an app per test on SQLite and on PostgreSQL, tokens, and per-user clients"""

import os
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import flask_migrate
import jwt
import pytest
import sqlalchemy as sa
from helpers import skip_unless_required

from todo import create_app, rls
from todo.extensions import db

TEST_SECRET = "test-secret-that-is-at-least-32-bytes-long"
BACKENDS = ("sqlite", "postgresql")


def make_token(user_id="alice", secret=TEST_SECRET, algorithm="HS256", ttl=300, **claims):
    """A signed token for `user_id`; `claims` override or add (None removes one)."""
    now = datetime.now(UTC)
    payload = {"sub": user_id, "iat": now, "exp": now + timedelta(seconds=ttl), **claims}
    payload = {key: value for key, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm=algorithm)


def base_config(database_url):
    return {
        "ENVIRONMENT": "test",
        "TESTING": True,
        "DATABASE_URL": database_url,
        "JWT_SECRET": TEST_SECRET,
        "JWT_JWKS_URL": None,
        "JWT_ALGORITHMS": None,
        "JWT_ISSUER": None,
        "JWT_AUDIENCE": None,
        "CORS_ORIGINS": [],
        "LOG_LEVEL": "INFO",
    }


def postgres_admin_url():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        skip_unless_required(
            "REQUIRE_POSTGRESQL", "TEST_DATABASE_URL is not set (the PostgreSQL half needs it)"
        )
    return sa.make_url(url).set(drivername="postgresql+psycopg")


def create_postgres_database(name):
    """A new, empty database on the TEST_DATABASE_URL server; returns its URL.

    The URL connects as a new role of the same name that owns the database and is
    not a superuser: superusers ignore row-level security, even FORCEd, so the app
    must not connect as one (todo/rls.py). The role's name is unique to this run,
    as roles are shared by every database of the server.
    """
    admin_url = postgres_admin_url()
    password = secrets.token_hex(16)  # for servers that do not trust 127.0.0.1
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(
            sa.text(
                f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE'
                f" PASSWORD '{password}'"
            )
        )
        connection.execute(sa.text(f'CREATE DATABASE "{name}" OWNER "{name}"'))
    engine.dispose()
    return admin_url.set(database=name, username=name, password=password).render_as_string(
        hide_password=False
    )


def drop_postgres_database(name):
    engine = sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'DROP ROLE IF EXISTS "{name}_operator"'))  # migration 0003
        connection.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
    engine.dispose()


def migrated(database_url):
    app = create_app(base_config(database_url))
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory):
    """One migrated database per backend for the whole run, created on first use."""
    urls, created = {}, []

    def get(backend):
        if backend not in urls:
            if backend == "sqlite":
                urls[backend] = f"sqlite:///{tmp_path_factory.mktemp('db') / 'todo.sqlite3'}"
            else:
                name = f"todo_test_{uuid.uuid4().hex[:12]}"
                urls[backend] = create_postgres_database(name)
                created.append(name)
            migrated(urls[backend])
        return urls[backend]

    yield get
    for name in created:
        drop_postgres_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def database_url(backend, database_urls):
    return database_urls(backend)


@pytest.fixture
def make_app(database_url):
    """Build apps on this test's database; rows are wiped and pools closed afterwards."""
    apps = []

    def make(**overrides):
        app = create_app({**base_config(database_url), **overrides})
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context(), rls.bypass():
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(table.delete())
            db.session.commit()
            db.engine.dispose()
            break
    for app in apps[1:]:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client_for(app):
    """client_for("alice"): a test client whose requests carry alice's token."""

    def client_for(user_id, token=None):
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token or make_token(user_id)}"
        return client

    return client_for


@pytest.fixture
def alice(client_for):
    return client_for("alice")


@pytest.fixture
def bob(client_for):
    return client_for("bob")


@pytest.fixture
def anonymous(app):
    return app.test_client()


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server of the module's own (servers.Postgres), for the
    tests that stop, restart or crash things: (server, URL of the app's database)."""
    from servers import Postgres  # noqa: PLC0415 (tests/servers.py imports this module)

    server = Postgres().init()
    try:  # a server that started must stop, even when the set-up fails after it
        server.start()
        yield server, server.create_app_database()
    finally:
        server.destroy()
