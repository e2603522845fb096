"""List pages kept per worker (todo/pagecache.py), and the revisions that keep them exact"""

import time
import tracemalloc
import uuid

import pytest
import sqlalchemy as sa
from conftest import make_token

from todo import admin, rls, seeding
from todo import tasks as task_service
from todo.extensions import db
from todo.models import USER_ID_MAX, Task, TaskRevision
from todo.pagecache import ENTRY_OVERHEAD_BYTES, PageCache

# PageCache on its own


def test_a_page_is_served_only_at_the_revision_it_was_stored_with():
    pages = PageCache(max_bytes=100, entry_overhead=0)
    pages.put("k", 7, "page", size=10)

    assert pages.get("k", 7) == "page"
    assert pages.get("k", 8) is None
    assert pages.get("other", 7) is None


def test_the_least_recently_used_pages_go_first_when_the_size_is_reached():
    pages = PageCache(max_bytes=30, entry_overhead=0)
    pages.put("a", 1, "A", size=10)
    pages.put("b", 1, "B", size=10)
    pages.put("c", 1, "C", size=10)
    assert pages.get("a", 1) == "A"  # now the most recently used

    pages.put("d", 1, "D", size=10)

    assert pages.get("b", 1) is None
    assert [pages.get(key, 1) for key in "acd"] == ["A", "C", "D"]
    assert pages.size == 30


def test_a_page_larger_than_the_cache_is_not_kept_and_a_new_one_replaces_the_old():
    pages = PageCache(max_bytes=10, entry_overhead=0)
    pages.put("big", 1, "X", size=11)
    pages.put("k", 1, "old", size=4)
    pages.put("k", 2, "new", size=6)

    assert pages.get("big", 1) is None
    assert pages.get("k", 2) == "new"
    assert pages.size == 6
    pages.clear()
    assert pages.size == 0 and pages.get("k", 2) is None


def test_each_page_also_counts_its_key_and_bookkeeping():
    pages = PageCache(max_bytes=10_000, entry_overhead=1000)
    pages.put("a", 1, "A", size=2)
    assert pages.size == 1002
    pages.put("big", 1, "B", size=9_001)  # 10,001 with its overhead: not kept
    assert pages.get("big", 1) is None and pages.size == 1002


def test_many_tiny_pages_with_the_longest_keys_stay_within_the_bound_in_memory():
    """A search that finds nothing is 2 bytes of JSON; counting only that, a user could
    fill a worker's memory with distinct searches."""
    bound = 2**20
    pages = PageCache(max_bytes=bound)
    longest_user = "\U0001f600" * USER_ID_MAX

    def key(n):
        search = "\U0001f600" * 195 + f"{n:05d}"  # the longest `q`, 4-byte characters
        after = ("\U0001f600" * 250, uuid.UUID(int=n))  # from a cursor of 1000 characters
        return (longest_user, "all", search, "title", 1000, after)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(3000):
            page = task_service.TaskPage(b"[]", count=0, total=0, limit=1000, next_cursor=None)
            pages.put(key(n), 1, page, len(page.items_json))
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    # Each page counts 2 bytes and ENTRY_OVERHEAD_BYTES: 255 of them fit, the newest.
    entry = 2 + ENTRY_OVERHEAD_BYTES
    assert bound // entry == 255
    assert pages.size == 255 * entry
    assert pages.get(key(3000 - 255), 1) is not None
    assert pages.get(key(3000 - 256), 1) is None
    # and what they really take in memory (keys, pages, bookkeeping) stays within it
    assert used <= bound


# Two workers on one database: two apps, each with its own cache


@pytest.fixture
def workers(make_app):
    """Two apps on the test's database, and a client of alice's for each."""
    first, second = make_app(), make_app()
    clients = []
    for app in (first, second):
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token('alice')}"
        clients.append(client)
    return (first, second), clients


def titles(client, query=""):
    response = client.get(f"/api/alice/tasks{query}")
    assert response.status_code == 200, response.json
    return [task["title"] for task in response.json["data"]]


def reads_of_pages(monkeypatch):
    """How many pages are read from the database (not served from memory)."""
    reads = []
    original = task_service._read_page

    def counted(user_id, **args):
        reads.append(args)
        return original(user_id, **args)

    monkeypatch.setattr(task_service, "_read_page", counted)
    return reads


def test_a_page_is_read_once_then_served_from_memory(workers, monkeypatch):
    _, (one, _) = workers
    assert one.post("/api/alice/tasks", json={"title": "a"}).status_code == 201
    reads = reads_of_pages(monkeypatch)

    assert titles(one) == ["a"]
    assert titles(one) == ["a"]
    assert titles(one, "?limit=5") == ["a"]

    assert len(reads) == 2  # the default page once, the page of 5 once


def test_every_write_from_another_worker_is_seen_by_the_next_list(workers):
    _, (one, two) = workers
    created = two.post("/api/alice/tasks", json={"title": "first"})
    task_id = created.json["data"]["id"]
    assert titles(one) == ["first"]

    assert two.post("/api/alice/tasks", json={"title": "second"}).status_code == 201
    assert titles(one) == ["second", "first"]

    assert two.put(f"/api/alice/tasks/{task_id}", json={"title": "renamed"}).status_code == 200
    assert titles(one) == ["second", "renamed"]

    assert two.patch(f"/api/alice/tasks/{task_id}/complete").status_code == 200
    assert titles(one, "?status=pending") == ["second"]
    assert titles(one, "?status=completed") == ["renamed"]

    assert two.delete(f"/api/alice/tasks/{task_id}").status_code == 204
    assert titles(one) == ["second"]
    assert titles(one, "?status=completed") == []


def test_a_write_outside_the_api_is_seen_too(workers):
    (_, second), (one, _) = workers
    assert one.post("/api/alice/tasks", json={"title": "before"}).status_code == 201
    assert titles(one) == ["before"]

    with second.app_context(), rls.acting_as("alice"):  # as psql or a script would
        db.session.execute(sa.update(Task).values(title="changed by hand"))
        db.session.commit()

    assert titles(one) == ["changed by hand"]


def test_another_users_writes_leave_ones_pages_in_memory(workers, monkeypatch):
    _, (one, two) = workers
    assert one.post("/api/alice/tasks", json={"title": "mine"}).status_code == 201
    assert titles(one) == ["mine"]
    bob = {"Authorization": f"Bearer {make_token('bob')}"}
    assert two.post("/api/bob/tasks", json={"title": "his"}, headers=bob).status_code == 201
    reads = reads_of_pages(monkeypatch)

    assert titles(one) == ["mine"]

    assert reads == []


def test_a_purged_user_who_comes_back_never_sees_the_old_pages(workers):
    (first, _), (one, two) = workers
    assert one.post("/api/alice/tasks", json={"title": "old"}).status_code == 201
    assert titles(one) == ["old"]

    with first.app_context(), rls.bypass():
        admin.purge_user("alice")
        assert db.session.get(TaskRevision, "alice") is None
    assert two.post("/api/alice/tasks", json={"title": "new"}).status_code == 201

    assert titles(one) == ["new"]


def test_a_purged_user_never_sees_the_old_pages_when_revisions_run_ahead_of_the_clock(workers):
    """As after a burst of writes faster than one per millisecond (SQLite's triggers
    take at least the clock in milliseconds): alice's purged revision was the largest."""
    (first, _), (one, two) = workers
    zed = {"Authorization": f"Bearer {make_token('zed')}"}
    assert one.post("/api/zed/tasks", json={"title": "his"}, headers=zed).status_code == 201
    with first.app_context(), rls.bypass():
        ahead = int(time.time() * 1000) + 10**7
        db.session.execute(
            sa.update(TaskRevision).where(TaskRevision.user_id == "zed").values(revision=ahead)
        )
        db.session.commit()
    assert one.post("/api/alice/tasks", json={"title": "old"}).status_code == 201
    assert titles(one) == ["old"]

    with first.app_context(), rls.bypass():
        admin.purge_user("alice")
    assert two.post("/api/alice/tasks", json={"title": "new"}).status_code == 201

    assert titles(one) == ["new"]


def test_page_cache_mb_0_keeps_nothing(make_app, monkeypatch):
    app = make_app(PAGE_CACHE_MB=0)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token('alice')}"
    assert client.post("/api/alice/tasks", json={"title": "a"}).status_code == 201
    reads = reads_of_pages(monkeypatch)

    assert titles(client) == ["a"]
    assert titles(client) == ["a"]

    assert len(reads) == 2
    assert app.extensions["todo.pages"].size == 0


def test_a_kept_page_counts_the_bytes_of_its_json_and_cursor(make_app):
    # What bounds PAGE_CACHE_MB: a page counted smaller would let pages of 1000
    # tasks take far more memory than the setting says.
    app = make_app()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token('alice')}"
    for title in ("a", "b", "c"):
        assert client.post("/api/alice/tasks", json={"title": title}).status_code == 201

    response = client.get("/api/alice/tasks?limit=2")

    body = response.get_data()
    items_json = body[len(b'{"data":') : body.index(b',"meta":')]
    next_cursor = response.json["meta"]["next_cursor"]
    assert next_cursor
    expected = ENTRY_OVERHEAD_BYTES + len(items_json) + len(next_cursor)
    assert app.extensions["todo.pages"].size == expected


def test_a_bulk_insert_changes_the_revision_too(workers):
    """The seed and the import defer the trigger per row and bump the users after."""
    (first, _), (one, _) = workers
    assert one.post("/api/alice/tasks", json={"title": "typed"}).status_code == 201
    assert titles(one) == ["typed"]

    with first.app_context(), rls.bypass():
        assert seeding.seed(["alice", "bob"], 2) == 4

    assert len(titles(one)) == 3
    with first.app_context(), rls.bypass():
        assert {row.user_id for row in db.session.scalars(sa.select(TaskRevision))} == {
            "alice",
            "bob",
        }


def test_one_statement_over_several_users_changes_each_ones_revision(workers):
    """The trigger sees each user's rows of one statement once (two tasks each here)."""
    (first, _), (one, _) = workers
    bob = {"Authorization": f"Bearer {make_token('bob')}"}
    for title in ("a", "b"):
        assert one.post("/api/alice/tasks", json={"title": title}).status_code == 201
        assert one.post("/api/bob/tasks", json={"title": title}, headers=bob).status_code == 201
    assert titles(one) == ["b", "a"]

    def revisions():
        with first.app_context(), rls.bypass():
            rows = db.session.execute(sa.select(TaskRevision.user_id, TaskRevision.revision))
            return dict(rows.all())

    before = revisions()
    with first.app_context(), rls.bypass():  # as an operator's script would
        assert db.session.execute(sa.update(Task).values(title="bulk")).rowcount == 4
        db.session.commit()
    after = revisions()

    assert after.keys() == before.keys() == {"alice", "bob"}
    assert after["alice"] != before["alice"] and after["bob"] != before["bob"]
    assert titles(one) == ["bulk", "bulk"]
