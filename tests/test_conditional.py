"""Conditional requests: ETag, If-None-Match (304) and If-Match (412), decided by the database"""

import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from cli import tasks as tasks_cli
from todo import rls
from todo import tasks as task_service
from todo.extensions import db
from todo.models import Task


def create(client, **body):
    response = client.post("/api/alice/tasks", json={"title": "Buy milk", **body})
    assert response.status_code == 201, response.json
    return response


def url(task_id, suffix=""):
    return f"/api/alice/tasks/{task_id}{suffix}"


def stored_version(app, task_id):
    with app.app_context(), rls.bypass():
        return db.session.scalar(sa.select(Task.version).where(Task.id == uuid.UUID(task_id)))


def test_every_single_task_response_carries_the_etag_of_its_version(alice):
    created = create(alice)
    task_id = created.json["data"]["id"]
    assert created.headers["ETag"] == '"1"'

    got = alice.get(url(task_id))
    assert got.status_code == 200
    assert got.headers["ETag"] == '"1"'

    put = alice.put(url(task_id), json={"title": "Buy oat milk"})
    assert put.status_code == 200
    assert put.headers["ETag"] == '"2"'

    patched = alice.patch(url(task_id, "/complete"))
    assert patched.status_code == 200
    assert patched.headers["ETag"] == '"3"'

    assert alice.get(url(task_id)).headers["ETag"] == '"3"'
    # Lists and deletions carry no single task, so no ETag.
    assert "ETag" not in alice.get("/api/alice/tasks").headers
    assert "ETag" not in alice.delete(url(task_id)).headers


def test_the_etag_changes_on_every_change_and_only_then(app, alice):
    task_id = create(alice).json["data"]["id"]
    seen = []

    for method, suffix, body in [
        ("put", "", {"title": "Renamed"}),
        ("put", "", {"title": "Renamed", "description": "now with one"}),
        ("put", "", {"title": "Renamed", "description": None}),
        ("patch", "/complete", None),
        ("patch", "/complete", {"is_completed": False}),
        ("put", "", {"title": "Renamed", "is_completed": True}),
    ]:
        response = getattr(alice, method)(url(task_id, suffix), json=body)
        assert response.status_code == 200, response.json
        seen.append(response.headers["ETag"])
    assert seen == ['"2"', '"3"', '"4"', '"5"', '"6"', '"7"']

    # No change, no new version: a PUT of the same values, completing a completed task.
    same = alice.put(url(task_id), json={"title": "Renamed"})
    assert same.headers["ETag"] == '"7"'
    again = alice.patch(url(task_id, "/complete"))
    assert again.headers["ETag"] == '"7"'
    assert stored_version(app, task_id) == 7


def test_if_none_match_gives_304_without_a_body_and_200_once_changed(alice):
    task_id = create(alice).json["data"]["id"]

    not_modified = alice.get(url(task_id), headers={"If-None-Match": '"1"'})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert not_modified.headers["ETag"] == '"1"'

    # Weak comparison (RFC 9110 13.1.2), lists, and "*".
    for header in ('W/"1"', '"7", "1"', "*"):
        assert alice.get(url(task_id), headers={"If-None-Match": header}).status_code == 304

    alice.put(url(task_id), json={"title": "Changed"})
    fresh = alice.get(url(task_id), headers={"If-None-Match": '"1"'})
    assert fresh.status_code == 200
    assert fresh.headers["ETag"] == '"2"'
    assert fresh.json["data"]["title"] == "Changed"


WRITES = [
    ("put", "", {"title": "Changed"}, 200),
    ("patch", "/complete", None, 200),
    ("delete", "", None, 204),
]


@pytest.mark.parametrize("write", WRITES, ids=lambda write: write[0])
def test_stale_if_match_is_412_and_changes_nothing(app, alice, write):
    method, suffix, body, success = write
    task_id = create(alice).json["data"]["id"]
    alice.put(url(task_id), json={"title": "Second version"})

    stale = getattr(alice, method)(url(task_id, suffix), json=body, headers={"If-Match": '"1"'})

    assert stale.status_code == 412
    assert stale.json["error"]["code"] == "PRECONDITION_FAILED"
    assert stale.headers["Content-Type"] == "application/json"
    current = alice.get(url(task_id))
    assert current.json["data"]["title"] == "Second version"
    assert current.json["data"]["is_completed"] is False
    assert stored_version(app, task_id) == 2

    fresh = getattr(alice, method)(url(task_id, suffix), json=body, headers={"If-Match": '"2"'})
    assert fresh.status_code == success


@pytest.mark.parametrize("write", WRITES, ids=lambda write: write[0])
@pytest.mark.parametrize("if_match", [None, "*", '"1"', '"9", "1"', '"", "1"'])
def test_if_match_is_optional_and_star_or_current_passes(app, alice, write, if_match):
    method, suffix, body, success = write
    task_id = create(alice).json["data"]["id"]
    headers = {"If-Match": if_match} if if_match else {}

    response = getattr(alice, method)(url(task_id, suffix), json=body, headers=headers)

    assert response.status_code == success
    if method == "delete":
        assert stored_version(app, task_id) is None
    else:
        assert response.headers["ETag"] == '"2"'
        assert stored_version(app, task_id) == 2


@pytest.mark.parametrize("write", WRITES, ids=lambda write: write[0])
@pytest.mark.parametrize(
    "tag",
    ["", "01", "\u00b2", "\u0661", "2147483648", "3000000000", "9223372036854775808", "1" * 5000],
    ids=[
        "empty",
        "leading-zero",
        "superscript-two",
        "arabic-indic-one",
        "int32-max-plus-one",
        "3e9",
        "int64",
        "5000-digits",
    ],
)
def test_if_match_tags_that_no_version_can_have_are_412_not_500(app, alice, write, tag):
    method, suffix, body, _ = write
    task_id = create(alice).json["data"]["id"]
    header = f'"{tag}"'.encode("latin-1", errors="replace").decode("latin-1")

    response = getattr(alice, method)(url(task_id, suffix), json=body, headers={"If-Match": header})

    assert response.status_code == 412
    assert response.json["error"]["code"] == "PRECONDITION_FAILED"
    assert stored_version(app, task_id) == 1


def test_weak_etag_never_satisfies_if_match(app, alice):
    # If-Match uses the strong comparison (RFC 9110 13.1.1).
    task_id = create(alice).json["data"]["id"]

    response = alice.put(url(task_id), json={"title": "x"}, headers={"If-Match": 'W/"1"'})

    assert response.status_code == 412
    assert response.json["error"]["code"] == "PRECONDITION_FAILED"
    assert stored_version(app, task_id) == 1


def test_if_match_on_a_missing_or_foreign_task_is_404(app, alice, bob):
    task_id = create(alice).json["data"]["id"]

    response = bob.put(f"/api/bob/tasks/{task_id}", json={"title": "x"}, headers={"If-Match": "*"})
    missing = alice.put(url(uuid.uuid4()), json={"title": "x"}, headers={"If-Match": "*"})
    empty_tag = alice.put(url(uuid.uuid4()), json={"title": "x"}, headers={"If-Match": '""'})
    # Several tags: the current version is read first, and there is none.
    several = [
        alice.put(url(uuid.uuid4()), json={"title": "x"}, headers={"If-Match": '"1", "2"'}),
        alice.delete(url(uuid.uuid4()), headers={"If-Match": '"1", "2"'}),
        alice.patch(url(uuid.uuid4(), "/complete"), headers={"If-Match": '"1", "2"'}),
    ]

    for answer in (response, missing, empty_tag, *several):
        assert answer.status_code == 404
        assert answer.json["error"]["code"] == "NOT_FOUND"
    assert stored_version(app, task_id) == 1


def _behind_an_uncommitted_write(app, backend, task_id, send):
    """The response to `send()`, run while another transaction has changed the task
    (title "From B", a description, version 2) and not committed; it commits once
    the request waits for it (on PostgreSQL, seen waiting on the row's lock; on
    SQLite, once the request's UPDATE/DELETE has begun: it waits for the write lock)."""
    result = {}
    writing, committed = threading.Event(), threading.Event()

    def is_the_requests_write(statement):
        return threading.current_thread() is request and statement.lstrip().startswith(
            ("UPDATE", "DELETE")
        )

    def began(conn, cursor, statement, *args):
        if is_the_requests_write(statement):
            writing.set()

    def ended(conn, cursor, statement, *args):
        if is_the_requests_write(statement):
            result["ended_after_the_commit"] = committed.is_set()

    with app.app_context(), db.engine.connect() as other:
        with rls.bypass():
            rls.apply(other)
        other.execute(
            sa.update(Task)
            .where(Task.id == uuid.UUID(task_id))
            .values(
                title="From B",
                title_lower="from b",
                description="B's note",
                version=Task.version + 1,
            )
        )
        request = threading.Thread(target=lambda: result.update(response=send()))
        if backend == "postgresql":
            request.start()
            deadline = time.monotonic() + 20
            while not _waiting_on_a_lock(app) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _waiting_on_a_lock(app) == 1
            other.commit()
        else:
            sa.event.listen(db.engine, "before_cursor_execute", began)
            sa.event.listen(db.engine, "after_cursor_execute", ended)
            try:
                request.start()
                assert writing.wait(20), "the request never began its write"
                committed.set()
                other.commit()
                request.join(30)
            finally:
                sa.event.remove(db.engine, "before_cursor_execute", began)
                sa.event.remove(db.engine, "after_cursor_execute", ended)
            # the write began before the commit, and could only end after it
            assert result["ended_after_the_commit"] is True
    request.join(30)
    return result["response"]


def _waiting_on_a_lock(app):
    with app.app_context():
        waiting = db.session.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        db.session.rollback()
        return waiting


@pytest.mark.parametrize(
    "write",
    [("put", "", {"title": "From A"}), ("patch", "/complete", None), ("delete", "", None)],
    ids=lambda write: write[0],
)
def test_a_write_with_an_etag_that_another_writer_just_replaced_is_412(app, backend, alice, write):
    """The ETag check is in the UPDATE/DELETE's WHERE: after waiting for the other
    transaction, the row no longer has version 1, and nothing is written."""
    method, suffix, body = write
    task_id = create(alice).json["data"]["id"]

    response = _behind_an_uncommitted_write(
        app,
        backend,
        task_id,
        lambda: getattr(alice, method)(
            url(task_id, suffix), json=body, headers={"If-Match": '"1"'}
        ),
    )

    assert response.status_code == 412, response.json
    assert response.json["error"]["code"] == "PRECONDITION_FAILED"
    current = alice.get(url(task_id))
    assert current.status_code == 200
    assert current.json["data"]["title"] == "From B"
    assert current.json["data"]["is_completed"] is False
    assert stored_version(app, task_id) == 2


def test_a_write_without_if_match_applies_on_top_of_the_concurrent_one(app, backend, alice):
    """No lost update: the PUT's omitted fields keep what the other writer committed."""
    task_id = create(alice).json["data"]["id"]

    response = _behind_an_uncommitted_write(
        app, backend, task_id, lambda: alice.put(url(task_id), json={"title": "From A"})
    )

    assert response.status_code == 200, response.json
    assert response.headers["ETag"] == '"3"'
    assert response.json["data"]["title"] == "From A"
    assert response.json["data"]["description"] == "B's note"
    assert stored_version(app, task_id) == 3


def test_many_concurrent_writers_with_one_etag_exactly_one_wins(app, client_for):
    writers = [client_for("alice") for _ in range(6)]
    task_id = create(writers[0]).json["data"]["id"]
    barrier = threading.Barrier(len(writers))
    statuses = [None] * len(writers)

    def write(index):
        barrier.wait(10)
        response = writers[index].put(
            url(task_id), json={"title": f"Writer {index}"}, headers={"If-Match": '"1"'}
        )
        statuses[index] = response.status_code

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(statuses) == [200] + [412] * (len(writers) - 1)
    assert stored_version(app, task_id) == 2
    winner = statuses.index(200)
    assert writers[0].get(url(task_id)).json["data"]["title"] == f"Writer {winner}"


def test_a_write_that_read_the_clock_before_a_committed_one_never_takes_time_back(
    app, alice, bob, monkeypatch, tmp_path
):
    """Without If-Match, A reads the clock, then B reads it, completes the task and
    commits; A's PUT then applies on top (it waited for B's lock, or simply lost the
    race between two workers). A's older clock must not move updated_at back before
    B's completed_at: the task would read as completed after its last update, and
    the import refuses such a task."""
    task_id = create(alice).json["data"]["id"]
    completed = alice.patch(url(task_id, "/complete")).json["data"]  # B
    b_moment = datetime.fromisoformat(completed["completed_at"])
    monkeypatch.setattr(task_service, "utcnow", lambda: b_moment - timedelta(milliseconds=1))

    renamed = alice.put(url(task_id), json={"title": "From A"})  # A, on top of B

    assert renamed.status_code == 200, renamed.json
    task = renamed.json["data"]
    assert task["title"] == "From A" and task["completed_at"] == completed["completed_at"]
    assert task["updated_at"] >= completed["updated_at"]
    assert task["created_at"] <= task["completed_at"] <= task["updated_at"]
    monkeypatch.undo()
    path = tmp_path / "alice.jsonl"
    runner = app.test_cli_runner()
    assert (
        runner.invoke(tasks_cli, ["export", "--user-id", "alice", "--output", str(path)]).exit_code
        == 0
    )
    imported = runner.invoke(tasks_cli, ["import", str(path), "--user-id", "bob"])
    assert imported.exit_code == 0, imported.output
    assert bob.get(f"/api/bob/tasks/{task_id}").json["data"] == {**task, "user_id": "bob"}


def test_a_task_deleted_and_imported_again_never_answers_to_an_etag_of_before(app, alice, tmp_path):
    """Export, delete, import with the ids kept (a restore, a move back): the task
    reappears with the same id. A client still holding the ETag of an earlier
    content must get that content's change: 200 to If-None-Match, 412 to If-Match."""
    created = create(alice, title="A")
    task_id, first_etag = created.json["data"]["id"], created.headers["ETag"]
    assert alice.put(url(task_id), json={"title": "B"}).status_code == 200
    path = tmp_path / "alice.jsonl"
    runner = app.test_cli_runner()
    assert (
        runner.invoke(tasks_cli, ["export", "--user-id", "alice", "--output", str(path)]).exit_code
        == 0
    )
    assert alice.delete(url(task_id)).status_code == 204
    assert runner.invoke(tasks_cli, ["import", str(path), "--user-id", "alice"]).exit_code == 0

    revalidated = alice.get(url(task_id), headers={"If-None-Match": first_etag})
    stale_write = alice.put(url(task_id), json={"title": "C"}, headers={"If-Match": first_etag})

    assert revalidated.status_code == 200 and revalidated.json["data"]["title"] == "B"
    assert revalidated.headers["ETag"] != first_etag
    assert stale_write.status_code == 412
    assert alice.get(url(task_id)).json["data"]["title"] == "B"
