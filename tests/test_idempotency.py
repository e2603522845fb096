"""Idempotency-Key on POST: replays, conflicts, per-user keys, races and expiry"""

import hashlib
import threading
import time
import uuid
from datetime import timedelta

import flask_migrate
import pytest
import sqlalchemy as sa
from conftest import base_config, create_postgres_database, drop_postgres_database

from cli import tasks as tasks_cli
from todo import create_app, idempotency, rls
from todo.extensions import db
from todo.models import IdempotencyKey, Task, utcnow
from todo.resources import tasks as task_resources

URL = "/api/alice/tasks"
KEY = "4f1c0e0a-8a3b-4b8e-9d7e-2f6b1d0c9a11"


def post(client, body=None, key=KEY, user="alice"):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(f"/api/{user}/tasks", json=body or {"title": "Buy milk"}, headers=headers)


def rows(app, model):
    with app.app_context(), rls.bypass():
        return db.session.scalars(sa.select(model)).all()


def test_a_retry_replays_the_original_201_and_creates_nothing(app, alice):
    first = post(alice, {"title": "Buy milk", "description": "2 litres"})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers

    retry = post(alice, {"title": "Buy milk", "description": "2 litres"})

    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json["data"] == first.json["data"]
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.headers["ETag"] == first.headers["ETag"] == '"1"'
    assert retry.json["meta"]["request_id"] == retry.headers["X-Request-ID"]
    assert retry.headers["Cache-Control"] == "no-store"
    assert [task.id.hex for task in rows(app, Task)] == [first.json["data"]["id"].replace("-", "")]
    assert alice.get(URL).json["meta"]["total"] == 1


def test_the_replay_is_the_original_answer_even_after_the_task_changed(alice):
    first = post(alice)
    task_url = first.headers["Location"]
    alice.put(task_url, json={"title": "Renamed"})

    retry = post(alice)

    assert retry.status_code == 201
    assert retry.json["data"]["title"] == "Buy milk"
    assert retry.headers["ETag"] == '"1"'
    assert alice.get(task_url).json["data"]["title"] == "Renamed"


def test_the_body_is_compared_as_json_not_as_bytes(alice):
    first = alice.post(
        URL,
        data='{"title": "Buy milk", "is_completed": false}',
        content_type="application/json",
        headers={"Idempotency-Key": KEY},
    )
    retry = alice.post(
        URL,
        data='{ "is_completed":false,"title":"Buy milk" }',
        content_type="application/json; charset=utf-8",
        headers={"Idempotency-Key": KEY},
    )

    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json["data"]["id"] == first.json["data"]["id"]


def test_a_lone_surrogate_in_an_ignored_field_is_fingerprinted_not_a_500(app, alice):
    # The read-only fields a client sends back are ignored, whatever they hold; a
    # lone surrogate cannot be encoded as UTF-8 as it is.
    body = '{"title": "Buy milk", "created_at": "\\udc00"}'

    def send(data):
        return alice.post(
            URL, data=data, content_type="application/json", headers={"Idempotency-Key": KEY}
        )

    first, retry = send(body), send(body)
    other = send(body.replace("dc00", "dc01"))

    assert first.status_code == 201, first.json
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json["data"]["id"] == first.json["data"]["id"]
    assert other.status_code == 409
    assert other.json["error"]["code"] == "CONFLICT"
    assert len(rows(app, Task)) == 1


def test_the_fingerprint_of_valid_text_is_its_utf8_json_as_stored_before():
    # Keys stored before a change of the encoding must still replay within their 24 hours.
    payload = {"title": "Café ☕ \U0001f600", "is_completed": False}

    expected = hashlib.sha256('{"is_completed":false,"title":"Café ☕ \U0001f600"}'.encode())

    assert idempotency.fingerprint(payload) == expected.hexdigest()


def test_the_same_key_with_another_body_is_409(app, alice):
    first = post(alice, {"title": "Buy milk"})

    other = post(alice, {"title": "Buy bread"})

    assert other.status_code == 409
    assert other.json["error"]["code"] == "CONFLICT"
    assert other.json["error"]["message"] == (
        "This Idempotency-Key was already used with another request body;"
        " use a new key for a new task."
    )
    assert "Idempotent-Replayed" not in other.headers
    assert [str(task.id) for task in rows(app, Task)] == [first.json["data"]["id"]]


def test_keys_are_per_user(app, alice, bob):
    mine = post(alice)
    theirs = post(bob, user="bob")

    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json["data"]["user_id"] == "bob"
    assert theirs.json["data"]["id"] != mine.json["data"]["id"]
    assert len(rows(app, Task)) == 2


def test_without_a_key_every_post_creates_a_task(app, alice):
    post(alice, key=None)
    post(alice, key=None)

    assert len(rows(app, Task)) == 2
    assert rows(app, IdempotencyKey) == []


@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "tab\there", "caf\xe9"])
def test_a_malformed_key_is_400_under_headers(app, alice, key):
    response = post(alice, key=key)

    assert response.status_code == 400
    assert response.json["error"]["code"] == "VALIDATION_ERROR"
    assert response.json["error"]["details"] == {
        "headers": {
            "Idempotency-Key": ["Must be 1 to 255 visible ASCII characters (a UUID is a good key)."]
        }
    }
    assert rows(app, Task) == []


def test_the_longest_key_is_accepted(app, alice):
    assert post(alice, key="~" * 255).status_code == 201
    assert [record.key for record in rows(app, IdempotencyKey)] == ["~" * 255]


def test_a_refused_request_stores_nothing_so_the_key_can_be_retried(app, alice):
    refused = post(alice, {"title": ""})
    assert refused.status_code == 400
    assert rows(app, IdempotencyKey) == []

    fixed = post(alice, {"title": "Buy milk"})

    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed.headers


def _age_keys(app, hours):
    with app.app_context(), rls.bypass():
        db.session.execute(
            sa.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=hours))
        )
        db.session.commit()


def test_an_expired_key_is_ignored_and_replaced(app, alice):
    first = post(alice, {"title": "Buy milk"})
    _age_keys(app, 24.1)

    again = post(alice, {"title": "Something else"})

    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert again.json["data"]["id"] != first.json["data"]["id"]
    records = rows(app, IdempotencyKey)
    assert [str(record.task_id) for record in records] == [again.json["data"]["id"]]
    assert post(alice, {"title": "Something else"}).headers["Idempotent-Replayed"] == "true"


def test_a_key_just_under_24_hours_old_still_replays(app, alice):
    first = post(alice)
    _age_keys(app, 23.9)

    retry = post(alice)

    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json["data"]["id"] == first.json["data"]["id"]


def test_the_cli_deletes_expired_keys_of_every_user_only(app, alice, bob):
    post(alice, key="old-alice")
    post(bob, key="old-bob", user="bob")
    _age_keys(app, 25)
    post(alice, key="fresh")

    result = app.test_cli_runner().invoke(tasks_cli, ["expire-idempotency-keys"])

    assert result.exit_code == 0, result.output
    assert result.output == "Deleted 2 expired idempotency key(s).\n"
    assert [record.key for record in rows(app, IdempotencyKey)] == ["fresh"]
    assert len(rows(app, Task)) == 3


def test_ten_concurrent_posts_with_one_key_create_one_task(app, client_for):
    clients = [client_for("alice") for _ in range(10)]
    barrier = threading.Barrier(len(clients))
    responses = [None] * len(clients)

    def send(index):
        barrier.wait(10)
        responses[index] = post(clients[index], {"title": "Only once"})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert [response.status_code for response in responses] == [201] * 10
    assert len({response.json["data"]["id"] for response in responses}) == 1
    replayed = [response.headers.get("Idempotent-Replayed") for response in responses]
    assert sorted(replayed, key=str) == [None] + ["true"] * 9
    assert len(rows(app, Task)) == 1
    assert len(rows(app, IdempotencyKey)) == 1


def _waiting_on_a_lock(app):
    with app.app_context():
        return db.session.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def _start_and_wait_for_its_first_write(app, thread):
    """Start `thread` (a POST with a key) and return once its first write on the key
    table has begun: on SQLite it then waits for the write lock another request
    holds (the DELETE of an expired record comes before the INSERT)."""
    writing = threading.Event()

    def began(conn, cursor, statement, *args):
        if threading.current_thread() is thread and statement.startswith(
            ("DELETE FROM idempotency_keys", "INSERT INTO idempotency_keys")
        ):
            writing.set()

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", began)
    try:
        thread.start()
        assert writing.wait(20), "the request never began its write"
    finally:
        sa.event.remove(engine, "before_cursor_execute", began)


def test_the_unique_key_decides_a_race_the_python_check_missed(
    app, backend, client_for, monkeypatch
):
    """B's lookup misses A's uncommitted key (as in a real race); B's INSERT of the
    same key then waits for A's transaction (on SQLite, its first write does: writers
    are serialised), fails on the primary key, and B replays A's answer. One task."""
    a_flushed, release = threading.Event(), threading.Event()
    original_headers = task_resources.created_headers
    original_live = idempotency._live
    threads = {}

    def headers_then_pause(task):  # runs after A's INSERTs, before its COMMIT
        if threading.current_thread() is threads.get("a"):
            a_flushed.set()
            assert release.wait(20)
        return original_headers(task)

    misses = {"b": 1}

    def live_missing_once(user_id, key):
        if threading.current_thread() is threads.get("b") and misses["b"]:
            misses["b"] -= 1
            return None
        return original_live(user_id, key)

    monkeypatch.setattr(task_resources, "created_headers", headers_then_pause)
    monkeypatch.setattr(idempotency, "_live", live_missing_once)
    responses = {}

    def send(name):
        responses[name] = post(client_for("alice"), {"title": "Raced"})

    threads["a"] = threading.Thread(target=send, args=("a",))
    threads["a"].start()
    assert a_flushed.wait(20)
    threads["b"] = threading.Thread(target=send, args=("b",))
    if backend == "postgresql":
        threads["b"].start()
        # Proof that B is inside its INSERT, blocked by A's uncommitted key.
        deadline = time.monotonic() + 20
        while not _waiting_on_a_lock(app) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _waiting_on_a_lock(app) == 1
    else:
        _start_and_wait_for_its_first_write(app, threads["b"])
    release.set()
    threads["a"].join(30)
    threads["b"].join(30)

    assert responses["a"].status_code == responses["b"].status_code == 201
    assert "Idempotent-Replayed" not in responses["a"].headers
    assert responses["b"].headers["Idempotent-Replayed"] == "true"
    assert responses["b"].json["data"] == responses["a"].json["data"]
    assert misses["b"] == 0
    assert len(rows(app, Task)) == 1


def test_migrations_after_0001_downgrade_and_upgrade_again(backend, tmp_path):
    name = f"todo_migrations_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
    else:
        url = create_postgres_database(name)
    app = create_app(base_config(url))
    try:
        with app.app_context():
            all_tables = {"tasks", "idempotency_keys", "task_revisions"}
            if backend == "sqlite":
                all_tables.add("task_revision_counter")  # migration 0005
            flask_migrate.upgrade()
            assert _schema(backend) == (all_tables, True)
            flask_migrate.downgrade(revision="0001")
            assert _schema(backend) == ({"tasks"}, False)
            flask_migrate.upgrade()
            assert _schema(backend) == (all_tables, True)
            db.engine.dispose()
    finally:
        if backend == "postgresql":
            drop_postgres_database(name)


def _schema(backend):
    """(the app's tables, whether RLS is forced on all of them; True on SQLite)."""
    db.session.commit()  # see the schema as of now
    tables = set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}
    if backend == "sqlite":
        return tables, "idempotency_keys" in tables
    forced = db.session.scalars(
        sa.text(
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class"
            " WHERE relname IN ('tasks', 'idempotency_keys', 'task_revisions')"
        )
    ).all()
    db.session.commit()
    return tables, bool(forced) and all(forced)
