"""Migrations: upgrade an empty database, no drift from the models, idempotent, reversible"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from conftest import (
    TEST_SECRET,
    base_config,
    create_postgres_database,
    drop_postgres_database,
    postgres_admin_url,
)
from flask_migrate.cli import db as db_commands
from helpers import every_row, insert

from todo import create_app, rls
from todo.extensions import db
from todo.models import Task

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).parent / "flask"


@pytest.fixture
def empty_database_url(backend, tmp_path):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = f"todo_migrations_{uuid.uuid4().hex[:12]}"
    url = create_postgres_database(name)
    yield url
    drop_postgres_database(name)


@pytest.fixture
def empty_app(empty_database_url):
    app = create_app(base_config(empty_database_url))
    yield app
    with app.app_context():
        db.engine.dispose()


def flask_db(app, *args):
    result = app.test_cli_runner().invoke(db_commands, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def tables(app):
    with app.app_context():
        return set(sa.inspect(db.engine).get_table_names())


def version(app):
    with app.app_context(), db.engine.connect() as connection:
        if "alembic_version" not in sa.inspect(connection).get_table_names():
            return None
        return set(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def heads(app):
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        return set(ScriptDirectory.from_config(config).get_heads())


def test_upgrade_an_empty_database_then_check_finds_no_drift(empty_app, backend):
    assert tables(empty_app) == set()

    flask_db(empty_app, "upgrade")

    expected = {"alembic_version", "tasks", "idempotency_keys", "task_revisions"}
    if backend == "sqlite":
        expected.add("task_revision_counter")  # 0005: SQLite's revision sequence
    assert tables(empty_app) == expected
    assert version(empty_app) == heads(empty_app)
    flask_db(empty_app, "check")


def test_upgrade_twice_is_harmless(empty_app):
    flask_db(empty_app, "upgrade")
    insert(empty_app, titles=["Keep"])

    flask_db(empty_app, "upgrade")

    assert version(empty_app) == heads(empty_app)
    with empty_app.app_context(), every_row():
        assert db.session.scalar(sa.text("SELECT title FROM tasks")) == "Keep"


def test_downgrade_to_base_then_upgrade_again(empty_app):
    flask_db(empty_app, "upgrade")

    flask_db(empty_app, "downgrade", "base")

    assert tables(empty_app) == {"alembic_version"}
    assert version(empty_app) == set()  # the table stays, with no revision in it
    flask_db(empty_app, "upgrade")
    assert version(empty_app) == heads(empty_app)
    flask_db(empty_app, "check")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_role_without_createrole_migrates_with_an_operator_role_granted_beforehand(
    empty_database_url, empty_app
):
    """The README's way for a role that may not create roles: an administrator creates
    `<database>_operator` and grants it without inheritance; 0003 then grants nothing."""
    name = sa.make_url(empty_database_url).database
    admin = sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'ALTER ROLE "{name}" NOCREATEROLE'))
        connection.execute(sa.text(f'CREATE ROLE "{name}_operator" NOLOGIN'))
        if connection.dialect.server_version_info >= (16,):
            connection.execute(sa.text(f'GRANT "{name}_operator" TO "{name}" WITH INHERIT FALSE'))
        else:
            connection.execute(sa.text(f'ALTER ROLE "{name}" NOINHERIT'))
            connection.execute(sa.text(f'GRANT "{name}_operator" TO "{name}"'))
    admin.dispose()
    admin = sa.create_engine(postgres_admin_url().set(database=name), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:  # what a NOINHERIT owner no longer inherits
        connection.execute(sa.text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{name}"'))
    admin.dispose()

    flask_db(empty_app, "upgrade")

    assert version(empty_app) == heads(empty_app)
    insert(empty_app, "alice", titles=["a1"])
    insert(empty_app, "bob", titles=["b1"])
    with empty_app.app_context():
        assert db.session.scalars(sa.select(Task.title)).all() == []
        with rls.bypass():
            assert sorted(db.session.scalars(sa.select(Task.title))) == ["a1", "b1"]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_superuser_that_migrates_keeps_its_attributes_and_gets_no_grant(empty_database_url):
    """Below PostgreSQL 16, 0003 made the migrating role NOINHERIT: run as the server's
    `postgres`, it changed a role every database shares. A throwaway superuser here."""
    name = sa.make_url(empty_database_url).database
    superuser = f"{name}_su"
    admin = sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE ROLE "{superuser}" LOGIN SUPERUSER INHERIT'))
    url = postgres_admin_url().set(username=superuser, password=None, database=name)
    app = create_app(base_config(url.render_as_string(hide_password=False)))
    try:
        flask_db(app, "upgrade")
        assert version(app) == heads(app)
        with admin.connect() as connection:
            inherits, member = connection.execute(
                sa.text(
                    "SELECT rolinherit, EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles o"
                    " ON o.oid = m.roleid WHERE m.member = r.oid AND o.rolname = :operator)"
                    " FROM pg_roles r WHERE r.rolname = :superuser"
                ),
                {"operator": f"{name}_operator", "superuser": superuser},
            ).one()
        assert (inherits, member) == (True, False)
    finally:
        with app.app_context():
            db.engine.dispose()
        owner = sa.create_engine(
            postgres_admin_url().set(database=name), isolation_level="AUTOCOMMIT"
        )
        with owner.connect() as connection:  # what it created goes to the database's owner
            connection.execute(sa.text(f'REASSIGN OWNED BY "{superuser}" TO "{name}"'))
            connection.execute(sa.text(f'DROP OWNED BY "{superuser}"'))
        owner.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP ROLE "{superuser}"'))
        admin.dispose()


def test_check_detects_drift(empty_app):
    flask_db(empty_app, "upgrade")
    with empty_app.app_context():
        db.session.execute(sa.text("DROP INDEX ix_tasks_user_title"))
        db.session.commit()

    result = empty_app.test_cli_runner().invoke(db_commands, ["check"])

    # it fails for the dropped index, and for nothing else (a connection error would
    # fail too)
    assert result.exit_code == 1
    assert (
        "Detected added index 'ix_tasks_user_title' on '('user_id', 'title_lower', 'id')'"
        in result.output
    )
    assert (
        "Error: New upgrade operations detected: [('add_index', Index('ix_tasks_user_title',"
        in (result.output)
    )


def test_the_flask_command_upgrades_and_checks(empty_database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "ENVIRONMENT")}
    env.update(
        ENVIRONMENT="test",
        DATABASE_URL=empty_database_url,
        JWT_SECRET=TEST_SECRET,
        INSTANCE_PATH=str(tmp_path),
    )

    for command in (["db", "upgrade"], ["db", "check"], ["db", "current"]):
        result = subprocess.run(
            [str(FLASK), *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert result.stdout == "0006 (head)\n"  # db current, the last command
