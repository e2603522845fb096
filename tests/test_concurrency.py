"""Many clients, several gunicorn workers, one database: what holds whatever the order

Black-box, against `gunicorn wsgi:app` (gunicorn.conf.py) with two sync workers on
each backend: each request is a new connection, so consecutive requests are answered
by either worker, each with its own list pages in memory (todo/pagecache.py). Threads
start together at a barrier; the assertions are about what every answer must be, so
they hold in any interleaving (none waits for a moment or measures a time).
"""

import contextlib
import random
import threading
import urllib.parse
import uuid

import pytest
import sqlalchemy as sa
from conftest import BACKENDS, base_config, make_token
from servers import Gunicorn, wait_until

from todo import create_app, rls
from todo.extensions import db


@pytest.fixture(scope="module", params=BACKENDS)
def database(request, database_urls):
    """The backend's test database; this module's rows are removed at the end."""
    url = database_urls(request.param)
    yield request.param, url
    app = create_app(base_config(url))
    with app.app_context(), rls.bypass():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        db.engine.dispose()


@pytest.fixture(scope="module")
def server(database):
    gunicorn = Gunicorn(database[1], workers=2)
    yield gunicorn
    gunicorn.stop()


class Client:
    """A user's requests to the server: (status, headers, body)."""

    def __init__(self, server, user=None):
        self.server = server
        self.user = user or f"user-{uuid.uuid4().hex[:12]}"
        self.base = f"/api/{self.user}/tasks"
        self.auth = {"Authorization": f"Bearer {make_token(self.user, ttl=3600)}"}

    def __call__(self, method, path="", body=None, headers=None):
        return self.server.request(
            method, self.base + path, body, {**self.auth, **(headers or {})}, timeout=30
        )

    def listed(self, **query):
        status, _, body = self("GET", "?" + urllib.parse.urlencode({"limit": 1000, **query}))
        assert status == 200, body
        assert body["meta"]["count"] == len(body["data"]) == body["meta"]["total"]
        return {task["id"]: task for task in body["data"]}


def together(count, work):
    """Run work(0) ... work(count - 1) in threads that start at one barrier; re-raises
    the first failure."""
    barrier = threading.Barrier(count)
    errors = []

    def run(index):
        try:
            barrier.wait(30)
            work(index)
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    if errors:
        raise errors[0]


def matches(task, status):
    return status == "all" or task["is_completed"] == (status == "completed")


def test_a_list_from_any_worker_shows_every_write_answered_before_it(server):
    """Six clients of two users write and list in turn. After each answered write,
    the next lists (any worker, any filter) show each of the client's tasks exactly
    as its last answer gave it, and none it deleted."""
    users = [Client(server), Client(server)]

    def work(index):
        client = Client(server, users[index % 2].user)
        mine, gone = {}, set()
        for step in range(12):
            action = random.choice(["post", "put", "put same", "complete", "reopen", "delete"])
            if action == "post" or not mine:
                status, _, body = client("POST", "", {"title": f"{index}-{step}"})
                assert status == 201, body
            elif action == "delete":
                task_id = mine.popitem()[0]
                status, _, body = client("DELETE", f"/{task_id}")
                assert status == 204, body
                gone.add(task_id)
            else:
                task = random.choice(list(mine.values()))
                if action.startswith("put"):
                    title = task["title"] if action == "put same" else f"{index}-{step} renamed"
                    status, _, body = client("PUT", f"/{task['id']}", {"title": title})
                else:
                    completing = {"is_completed": action == "complete"}
                    status, _, body = client("PATCH", f"/{task['id']}/complete", completing)
                assert status == 200, body
            if status != 204:
                mine[body["data"]["id"]] = body["data"]
            for query in ({}, {"sort": "title"}, {"status": "pending"}, {"status": "completed"}):
                listed = client.listed(**query)
                for task_id, task in mine.items():
                    if matches(task, query.get("status", "all")):
                        assert listed.get(task_id) == task, (query, task)
                    else:
                        assert task_id not in listed, (query, task)
                assert not gone & set(listed), query

    together(6, work)


SORTS = ("-created_at", "created_at", "-updated_at", "title", "-title")


def test_a_keyset_walk_during_inserts_and_deletes_gives_every_lasting_task_once(server):
    """While two clients insert and delete tasks, walkers page through all five
    orders, 7 at a time: every task that exists throughout (and does not change)
    comes exactly once, and every page's meta agrees with it."""
    client = Client(server)
    lasting = set()
    for n in range(40):
        status, _, body = client("POST", "", {"title": f"lasting {n:02d}"})
        lasting.add(body["data"]["id"])
    walking = threading.Event()
    walking.set()

    def churn():
        made = []
        while walking.is_set():
            if len(made) < 4 or random.random() < 0.5:
                title = random.choice(["aaa", "lasting 20", "zzz"])
                status, _, body = client("POST", "", {"title": title})
                assert status == 201, body
                made.append(body["data"]["id"])
            else:
                status, _, body = client("DELETE", f"/{made.pop(random.randrange(len(made)))}")
                assert status == 204, body

    def walk(sort):
        seen, cursor = [], None
        for _ in range(100):
            query = {"sort": sort, "limit": 7, **({"cursor": cursor} if cursor else {})}
            status, _, body = client("GET", "?" + urllib.parse.urlencode(query))
            assert status == 200, body
            meta = body["meta"]
            assert meta["count"] == len(body["data"]) <= 7
            assert meta["count"] == 7 or meta["next_cursor"] is None
            seen += [task["id"] for task in body["data"]]
            cursor = meta["next_cursor"]
            if cursor is None:
                break
        assert cursor is None, "the walk did not end"
        assert len(seen) == len(set(seen)), "a task came twice"
        assert lasting <= set(seen)

    def work(index):
        if index < 2:
            churn()
            return
        try:
            for sort in SORTS:
                walk(sort)
        finally:
            walking.clear()

    together(3, work)


def test_read_modify_writes_with_if_match_from_many_clients_lose_no_update(server):
    """Six clients each add 1 to a counter (the title) eight times: read, then PUT
    with If-Match, again on 412; PATCHes with If-Match interleave. Every answer is
    200 or 412, and the counter ends at 48."""
    client = Client(server)
    status, _, body = client("POST", "", {"title": "0"})
    path = f"/{body['data']['id']}"

    def work(index):
        for _ in range(8):
            while True:
                status, headers, body = client("GET", path)
                assert status == 200, body
                etag, count = headers["ETag"], int(body["data"]["title"])
                if random.random() < 0.3:
                    completing = {"is_completed": random.random() < 0.5}
                    status, _, body = client(
                        "PATCH", f"{path}/complete", completing, {"If-Match": etag}
                    )
                    assert status in (200, 412), body
                    continue
                status, _, body = client("PUT", path, {"title": str(count + 1)}, {"If-Match": etag})
                assert status in (200, 412), body
                if status == 200:
                    break

    together(6, work)

    assert client("GET", path)[2]["data"]["title"] == "48"


def test_writes_without_if_match_on_one_task_keep_every_field_and_time_in_order(server):
    """Rename, describe (a PUT that keeps the title) and complete at once: every one
    applies on top of the others, and created_at <= completed_at <= updated_at, which
    no answer's updated_at passes."""
    client = Client(server)
    for _ in range(15):
        status, _, body = client("POST", "", {"title": "x"})
        path = f"/{body['data']['id']}"
        writes = [
            ("PUT", path, {"title": "renamed"}),
            ("PUT", path, {"title": "x", "description": "described"}),
            ("PATCH", f"{path}/complete", None),
        ]
        answers = [None] * len(writes)

        def work(index, writes=writes, answers=answers):
            answers[index] = client(*writes[index])

        together(len(writes), work)

        assert [answer[0] for answer in answers] == [200] * len(writes)
        task = client("GET", path)[2]["data"]
        assert task["description"] == "described" and task["is_completed"] is True
        assert task["created_at"] <= task["completed_at"] <= task["updated_at"]
        assert max(answer[2]["data"]["updated_at"] for answer in answers) == task["updated_at"]


def test_deletes_and_writes_racing_on_one_task_answer_exactly(server):
    """Six requests on one task, half with its ETag: exactly one DELETE is 204; every
    other answer is 200, 404, or (with If-Match only) 412; the task ends deleted."""
    client = Client(server)
    for _ in range(10):
        status, headers, body = client("POST", "", {"title": "x"})
        path, etag = f"/{body['data']['id']}", headers["ETag"]
        answers = [None] * 6

        def work(index, path=path, etag=etag, answers=answers):
            conditional = {"If-Match": etag} if index % 2 else {}
            method, suffix, body = [
                ("DELETE", "", None),
                ("PUT", "", {"title": f"w{index}"}),
                ("PATCH", "/complete", None),
            ][index % 3]
            answers[index] = (
                method,
                bool(conditional),
                client(method, path + suffix, body, conditional)[0],
            )

        together(6, work)

        deleted = [answer for answer in answers if answer[2] == 204]
        assert len(deleted) == 1 and deleted[0][0] == "DELETE", answers
        for method, conditional, status in answers:
            allowed = {204, 404} if method == "DELETE" else {200, 404}
            assert status in allowed | ({412} if conditional else set()), answers
        assert client("GET", path)[0] == 404


@contextlib.contextmanager
def writes_blocked(backend, url):
    """Every write to tasks waits until the block ends: a SQLite write lock, or on
    PostgreSQL a table lock that lets reads through."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        if backend == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")
            connection.exec_driver_sql("LOCK TABLE tasks IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.exec_driver_sql("ROLLBACK")
    engine.dispose()


def test_an_exhausted_pool_answers_503_with_retry_after_then_recovers(database):
    """One worker of four threads over a pool of one connection (DB_POOL_SIZE=1,
    DB_MAX_OVERFLOW=0): while a PUT holds the connection, waiting for a lock, other
    requests wait DB_POOL_TIMEOUT for it and answer 503, never 500; afterwards all
    is served again."""
    backend, url = database
    gunicorn = Gunicorn(
        url,
        workers=1,
        extra_env={
            "DB_POOL_SIZE": "1",
            "DB_MAX_OVERFLOW": "0",
            "DB_POOL_TIMEOUT": "1",
            "DB_STATEMENT_TIMEOUT_MS": "60000",
        },
        args=("--worker-class", "gthread", "--threads", "4"),
    )
    try:
        client = Client(gunicorn)
        status, _, body = client("POST", "", {"title": "x"})
        path = f"/{body['data']['id']}"
        put = {}
        with writes_blocked(backend, url):
            holder = threading.Thread(
                target=lambda: put.update(answer=client("PUT", path, {"title": "y"}))
            )
            holder.start()
            refused = wait_until(lambda: (answer := client("GET", path))[0] == 503 and answer)
            assert refused, "no request ever waited for the pool"
            status, headers, body = refused
            assert headers["Retry-After"].isdigit()
            assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
            assert client("GET", "")[0] == 503
        holder.join(60)

        assert put["answer"][0] == 200
        assert client("GET", path)[2]["data"]["title"] == "y"
        assert client("GET", "")[0] == 200
        assert client("POST", "", {"title": "z"})[0] == 201
        assert "Traceback" not in gunicorn.output()
    finally:
        gunicorn.stop()
