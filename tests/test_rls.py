"""Row-level security on PostgreSQL: a request's queries reach only its user's rows

SQLite has no row-level security; there the application's own `WHERE user_id`
filter is what test_tasks.py checks, on both backends.
"""

import uuid

import pytest
import sqlalchemy as sa
from conftest import base_config, make_token
from flask import g
from helpers import skip_unless_required
from servers import NO_PGBOUNCER, PGBOUNCER, PgBouncer, Postgres

from todo import create_app, rls
from todo import tasks as task_service
from todo.extensions import db
from todo.models import IdempotencyKey, Task, utcnow


@pytest.fixture
def backend():
    """Only PostgreSQL: these tests are about its policies."""
    return "postgresql"


def seed(app, user_id, *titles):
    with app.app_context(), rls.acting_as(user_id):
        for title in titles:
            db.session.add(task_service.new_task(user_id, title))
        db.session.commit()


def everything(app):
    with app.app_context(), rls.bypass():
        return sorted((task.user_id, task.title) for task in db.session.scalars(sa.select(Task)))


def test_the_app_connects_as_a_non_superuser_and_rls_is_forced(app):
    with app.app_context():
        role = db.session.execute(
            sa.text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
        tables = db.session.execute(
            sa.text(
                "SELECT relname, relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner)"
                " FROM pg_class WHERE relname IN ('tasks', 'idempotency_keys') ORDER BY relname"
            )
        ).all()
        user = db.session.scalar(sa.text("SELECT current_user"))
    assert tuple(role) == (False, False)
    assert [tuple(row) for row in tables] == [
        ("idempotency_keys", True, True, user),
        ("tasks", True, True, user),
    ]


def test_unfiltered_select_update_delete_in_a_request_touch_only_the_callers_rows(
    app, alice, monkeypatch
):
    seed(app, "alice", "a1", "a2")
    seed(app, "bob", "b1", "b2", "b3")
    seen = {}

    def unfiltered(user_id, **args):
        # Inside GET /api/alice/tasks, after the token check: no WHERE user_id anywhere.
        seen["select"] = sorted(db.session.scalars(sa.select(Task.user_id)).all())
        seen["count"] = db.session.scalar(sa.select(sa.func.count()).select_from(Task))
        seen["update"] = db.session.execute(sa.update(Task).values(title="overwritten")).rowcount
        seen["delete"] = db.session.execute(
            sa.delete(Task).where(Task.title == "overwritten")
        ).rowcount
        db.session.commit()
        return task_service.TaskPage(items_json=b"[]", count=0, total=0, limit=1, next_cursor=None)

    monkeypatch.setattr(task_service, "list_page", unfiltered)

    assert alice.get("/api/alice/tasks").status_code == 200

    assert seen == {"select": ["alice", "alice"], "count": 2, "update": 2, "delete": 2}
    assert everything(app) == [("bob", "b1"), ("bob", "b2"), ("bob", "b3")]


def test_a_request_cannot_write_a_row_for_another_user(app):
    with app.test_request_context():
        g.user_id = "alice"
        db.session.add(task_service.new_task("bob", "planted"))
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            db.session.commit()
        db.session.rollback()
        db.session.add(
            IdempotencyKey(
                user_id="bob",
                key="k",
                fingerprint="0" * 64,
                task_id=uuid.uuid4(),
                status_code=201,
                created_at=utcnow(),
            )
        )
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            db.session.commit()
        db.session.rollback()
    assert everything(app) == []


def test_idempotency_records_are_visible_only_to_their_user(app, alice, bob):
    alice.post("/api/alice/tasks", json={"title": "a"}, headers={"Idempotency-Key": "k1"})
    bob.post("/api/bob/tasks", json={"title": "b"}, headers={"Idempotency-Key": "k2"})

    with app.test_request_context():
        g.user_id = "alice"
        keys = db.session.scalars(sa.select(IdempotencyKey.key)).all()
        deleted = db.session.execute(sa.delete(IdempotencyKey)).rowcount
        db.session.commit()
    assert keys == ["k1"]
    assert deleted == 1
    with app.app_context(), rls.bypass():
        assert db.session.scalars(sa.select(IdempotencyKey.key)).all() == ["k2"]


def test_without_a_user_nothing_is_visible_and_bypass_sees_everyone(app):
    seed(app, "alice", "a1")
    seed(app, "bob", "b1")

    with app.app_context():
        assert db.session.scalars(sa.select(Task)).all() == []
        assert db.session.execute(sa.delete(Task)).rowcount == 0
        db.session.commit()
        with rls.acting_as("bob"):
            assert db.session.scalars(sa.select(Task.title)).all() == ["b1"]
        with rls.bypass():
            assert len(db.session.scalars(sa.select(Task)).all()) == 2
        # Leaving the block ends the bypass, even inside the same transaction.
        assert db.session.scalars(sa.select(Task)).all() == []


@pytest.mark.parametrize("setting", [rls.bypass, lambda: rls.acting_as("alice")])
def test_an_error_inside_the_block_leaves_no_transaction_with_its_settings(app, setting):
    seed(app, "alice", "a1")
    with app.app_context():
        with pytest.raises(LookupError), setting():
            assert db.session.scalars(sa.select(Task.title)).all() == ["a1"]
            raise LookupError
        # The caller caught the error and goes on in the same session: as no one.
        assert db.session.scalar(sa.text("SELECT current_setting('role')")) == "none"
        assert db.session.scalar(sa.text("SELECT current_setting('app.user_id', true)")) == ""
        assert db.session.scalars(sa.select(Task)).all() == []


def test_the_user_does_not_outlive_its_transaction_on_a_pooled_connection(make_app):
    app = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0})
    seed(app, "alice", "a1")
    with app.app_context():
        with rls.acting_as("alice"):
            assert len(db.session.scalars(sa.select(Task)).all()) == 1
            db.session.commit()
            backend_pid = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
            db.session.commit()
        # The same server session, a new transaction with no user: nothing.
        assert db.session.scalar(sa.text("SELECT pg_backend_pid()")) == backend_pid
        assert db.session.scalar(sa.text("SELECT current_setting('app.user_id', true)")) == ""
        assert db.session.scalars(sa.select(Task)).all() == []


@pytest.fixture(scope="module")
def bouncer():
    if PGBOUNCER is None:
        skip_unless_required("REQUIRE_PGBOUNCER", NO_PGBOUNCER)
    server = Postgres().init()
    try:  # the server must not outlive the run, even when PgBouncer does not start
        server.start()
        server.create_app_database()
        pooler = PgBouncer(server)
        yield pooler
        pooler.stop()
    finally:
        server.destroy()


def test_behind_pgbouncer_transaction_mode_users_never_see_each_other(bouncer, monkeypatch):
    """Through one shared server connection, every transaction gets its own user."""
    app = create_app(
        {
            **base_config(bouncer.url()),
            # What todo/config.py does for a -pooler host: no startup options and no
            # server-side prepared statements.
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"prepare_threshold": None}},
        }
    )
    clients = {user: app.test_client() for user in ("alice", "bob")}
    for client, user in zip(clients.values(), clients, strict=True):
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token(user)}"
    seen = []

    def unfiltered(user_id, **args):
        backend_pid = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
        users = set(db.session.scalars(sa.select(Task.user_id)))
        seen.append((user_id, users, backend_pid))
        return task_service.TaskPage(items_json=b"[]", count=0, total=0, limit=1, next_cursor=None)

    for round_ in range(4):  # past psycopg's prepare threshold of 5 statements
        for user, client in clients.items():
            response = client.post(f"/api/{user}/tasks", json={"title": f"{user} {round_}"})
            assert response.status_code == 201
    monkeypatch.setattr(task_service, "list_page", unfiltered)
    for _ in range(3):
        for user, client in clients.items():
            assert client.get(f"/api/{user}/tasks").status_code == 200

    assert [(user, users) for user, users, _ in seen] == [
        ("alice", {"alice"}), ("bob", {"bob"}),
    ] * 3  # fmt: skip
    assert len({pid for _, _, pid in seen}) == 1  # one server session for everyone
    with app.app_context():
        # Same server session, no user in this transaction: nothing leaked into it.
        assert db.session.scalar(sa.text("SELECT current_setting('app.user_id', true)")) == ""
        assert db.session.scalars(sa.select(Task)).all() == []
        with rls.bypass():
            assert len(db.session.scalars(sa.select(Task)).all()) == 8
        db.session.close()
        db.engine.dispose()
