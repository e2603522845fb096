"""Crashes: a SIGKILLed worker loses no acknowledged write; SIGTERM finishes requests in flight

A real gunicorn on a throwaway PostgreSQL (tests/servers.py). A request is made to
be in flight at the moment of the signal by blocking it on a lock that the test
holds from a superuser connection, and checked with pg_stat_activity.
"""

import http.client
import os
import signal
import threading
import uuid

import pytest
import sqlalchemy as sa
from conftest import make_token
from servers import Gunicorn, wait_until

TOKEN = {"Authorization": f"Bearer {make_token('alice', ttl=3600)}"}


@pytest.fixture
def admin(postgres):
    engine = postgres[0].admin()
    yield engine
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE tasks, idempotency_keys"))
    engine.dispose()


def waiting_on_locks(admin) -> int:
    with admin.connect() as connection:
        return connection.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = 'todo' AND wait_event_type = 'Lock'"
            )
        )


def stored_task_ids(admin) -> set[str]:
    with admin.connect() as connection:
        return {str(task_id) for task_id in connection.scalars(sa.text("SELECT id FROM tasks"))}


class PostStream:
    """Threads that POST tasks one after another until stopped, noting every answer."""

    def __init__(self, gunicorn, threads=2):
        self.gunicorn = gunicorn
        self.created, self.failures = [], []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, n):
        i = 0
        while not self.stopped.is_set():
            i += 1
            try:
                status, _, body = self.gunicorn.request(
                    "POST", "/api/alice/tasks", {"title": f"stream {n}-{i}"}, TOKEN
                )
            # The worker died under this request: before its answer (OSError), or
            # between the answer's headers and its body (IncompleteRead).
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.failures.append(repr(error))
                continue
            with self.lock:
                if status == 201:
                    self.created.append(body["data"]["id"])
                else:
                    self.failures.append(status)

    def count(self) -> int:
        with self.lock:
            return len(self.created)

    def stop(self):
        self.stopped.set()
        for thread in self.threads:
            thread.join(30)


def test_sigkilled_workers_lose_no_write_that_was_acknowledged(postgres, admin):
    gunicorn = Gunicorn(postgres[1], workers=2)
    try:
        first_workers = gunicorn.workers()
        # One POST held inside its transaction: its Idempotency-Key row waits for ours.
        with admin.connect() as holder:
            holder.execute(
                sa.text(
                    "INSERT INTO idempotency_keys (user_id, key, fingerprint, task_id,"
                    " status_code, created_at) VALUES ('alice', 'held', :f, :t, 201, now())"
                ),
                {"f": "0" * 64, "t": uuid.uuid4()},
            )
            held = {}
            held_thread = threading.Thread(
                target=lambda: held.update(
                    result=_try(
                        gunicorn.request,
                        "POST",
                        "/api/alice/tasks",
                        {"title": "held"},
                        {**TOKEN, "Idempotency-Key": "held"},
                        timeout=30,
                    )
                )
            )
            held_thread.start()
            assert wait_until(lambda: waiting_on_locks(admin) == 1)

            stream = PostStream(gunicorn)
            assert wait_until(lambda: stream.count() >= 20, timeout=30)
            for pid in first_workers:  # every worker, the held request's included
                os.kill(pid, signal.SIGKILL)
            killed_at = stream.count()
            held_thread.join(30)
            holder.rollback()

        assert wait_until(lambda: stream.count() >= killed_at + 20, timeout=30)
        stream.stop()
    finally:
        gunicorn.stop()

    assert isinstance(held["result"], OSError)  # its worker died: no answer
    stored = stored_task_ids(admin)
    assert set(stream.created) <= stored  # every 201 is in the database
    assert len(stored - set(stream.created)) <= len(stream.failures)
    with admin.connect() as connection:
        titles = connection.scalars(sa.text("SELECT title FROM tasks")).all()
    assert "held" not in titles  # its transaction died with the worker
    assert not gunicorn.workers() & first_workers


def _try(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except OSError as error:
        return error


def test_sigterm_lets_the_request_in_flight_finish(postgres, admin):
    gunicorn = Gunicorn(postgres[1], workers=1)
    try:
        status, _, body = gunicorn.request("POST", "/api/alice/tasks", {"title": "before"}, TOKEN)
        assert status == 201
        task_id = body["data"]["id"]
        (worker,) = gunicorn.workers()
        answers = {}

        with admin.connect() as holder:
            holder.execute(
                sa.text("SELECT 1 FROM tasks WHERE id = :id FOR UPDATE"), {"id": task_id}
            )
            slow = threading.Thread(
                target=lambda: answers.update(
                    put=gunicorn.request(
                        "PUT",
                        f"/api/alice/tasks/{task_id}",
                        {"title": "after SIGTERM"},
                        TOKEN,
                        timeout=30,
                    )
                )
            )
            slow.start()
            assert wait_until(lambda: waiting_on_locks(admin) == 1)  # the PUT is in flight
            os.kill(worker, signal.SIGTERM)  # what the master sends, sent now
            gunicorn.process.send_signal(signal.SIGTERM)
            holder.rollback()  # the lock goes: the PUT proceeds
            slow.join(30)

        status, _, body = answers["put"]
        assert status == 200
        assert body["data"]["title"] == "after SIGTERM"
        assert gunicorn.process.wait(30) == 0
    finally:
        gunicorn.stop()
    with admin.connect() as connection:
        title = connection.scalar(
            sa.text("SELECT title FROM tasks WHERE id = :id"), {"id": task_id}
        )
    assert title == "after SIGTERM"
