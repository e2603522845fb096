"""`flask tasks seed`: realistic rows, consistent with the table's rules, added in bulk"""

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys

import pytest
import sqlalchemy as sa
from conftest import base_config
from helpers import TASK_FIELDS, TIME
from ops_support import ROOT, command_environment, fresh_database, unreachable_url
from servers import wait_until

from cli import tasks
from todo import create_app, rls, seeding
from todo.extensions import db
from todo.models import Task


def all_tasks(app):
    with app.app_context(), rls.bypass():
        return db.session.scalars(sa.select(Task).order_by(Task.user_id)).all()


def test_seed_adds_realistic_consistent_tasks(app):
    result = app.test_cli_runner().invoke(
        tasks,
        [
            "seed",
            "--users",
            "2",
            "--user-id",
            "alice",
            "--tasks-per-user",
            "40",
            "--completed-ratio",
            "0.5",
            "--random-seed",
            "7",
        ],
    )

    assert result.exit_code == 0, result.output
    # --random-seed 7 draws the same two user ids every time; the rate is the run's own
    assert re.fullmatch(
        r"Seeded 120 tasks for 3 users in \d+\.\d s \([\d,]+ tasks/s\)\.\n"
        r"Users: alice, ujOeHwdFcAefAZhnM6Jy8c1rihtYlKNx, HddmQAtKCsXRpJG2Tr8hzUjEcPVJ2tRK\n",
        result.stdout,
    ), result.stdout
    rows = all_tasks(app)
    per_user = {}
    for task in rows:
        per_user[task.user_id] = per_user.get(task.user_id, 0) + 1
        assert task.title and task.title == task.title.strip()
        assert task.title_lower == task.title.lower()
        assert task.created_at <= task.updated_at
        assert task.version == 1
        if task.is_completed:
            assert task.created_at <= task.completed_at <= task.updated_at
        else:
            assert task.completed_at is None
    assert per_user == {
        "alice": 40,
        "ujOeHwdFcAefAZhnM6Jy8c1rihtYlKNx": 40,
        "HddmQAtKCsXRpJG2Tr8hzUjEcPVJ2tRK": 40,
    }
    completed = sum(task.is_completed for task in rows)
    assert 0 < completed < 120  # a ratio of 0.5 over 120 draws
    assert len({task.title for task in rows}) > 20
    assert any(task.description for task in rows) and any(not task.description for task in rows)


def test_seeded_tasks_are_served_by_the_api(app, alice):
    app.test_cli_runner().invoke(tasks, ["seed", "--user-id", "alice", "--tasks-per-user", "30"])

    response = alice.get("/api/alice/tasks?limit=1000")

    assert response.status_code == 200
    assert response.json["meta"]["total"] == 30
    assert len(response.json["data"]) == 30
    for item in response.json["data"]:
        assert set(item) == TASK_FIELDS
        assert item["user_id"] == "alice"
        assert TIME.match(item["created_at"]) and TIME.match(item["updated_at"])
    created = [item["created_at"] for item in response.json["data"]]
    assert created == sorted(created, reverse=True)


def test_rerunning_with_the_same_random_seed_adds_to_the_same_users(app):
    runner = app.test_cli_runner()
    arguments = ["seed", "--users", "2", "--tasks-per-user", "5", "--random-seed", "42"]

    first = runner.invoke(tasks, arguments)
    second = runner.invoke(tasks, arguments)

    assert first.exit_code == second.exit_code == 0
    rows = all_tasks(app)
    assert len(rows) == 20
    assert len({task.user_id for task in rows}) == 2
    assert len({task.id for task in rows}) == 20


@pytest.mark.parametrize("ratio, expected", [("0", False), ("1", True)])
def test_completed_ratio_bounds(app, ratio, expected):
    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tasks-per-user", "10", "--completed-ratio", ratio]
    )

    assert result.exit_code == 0, result.output
    assert {task.is_completed for task in all_tasks(app)} == {expected}


def test_tokens_file_holds_a_working_token_per_user(app, tmp_path):
    tokens_file = tmp_path / "tokens.json"

    result = app.test_cli_runner().invoke(
        tasks,
        [
            "seed",
            "--users",
            "2",
            "--user-id",
            "alice",
            "--tasks-per-user",
            "3",
            "--tokens-file",
            str(tokens_file),
        ],
    )

    assert result.exit_code == 0, result.output
    tokens = json.loads(tokens_file.read_text())
    assert len(tokens) == 3 and "alice" in tokens
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    for user_id, token in tokens.items():
        response = app.test_client().get(
            f"/api/{user_id}/tasks", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200
        assert response.json["meta"]["total"] == 3


def test_tokens_file_that_exists_becomes_private(app, tmp_path):
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text("{}" + " " * 10_000)  # longer than what replaces it
    tokens_file.chmod(0o644)

    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tasks-per-user", "1", "--tokens-file", tokens_file]
    )

    assert result.exit_code == 0, result.output
    assert list(json.loads(tokens_file.read_text())) == ["alice"]
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600


def test_tokens_file_that_is_a_pipe_is_written_into_and_keeps_its_mode(app, tmp_path):
    pipe = tmp_path / "tokens"
    os.mkfifo(pipe)
    pipe.chmod(0o666)  # shared, as /dev/stdout is
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = app.test_cli_runner().invoke(
            tasks, ["seed", "--user-id", "alice", "--tasks-per-user", "1", "--tokens-file", pipe]
        )
        received = os.read(reader, 65536).decode()
    finally:
        os.close(reader)

    assert result.exit_code == 0, result.output
    assert list(json.loads(received)) == ["alice"]
    assert stat.S_IMODE(pipe.stat().st_mode) == 0o666


def test_tokens_file_through_a_dangling_symlink_creates_its_target(app, tmp_path):
    link = tmp_path / "tokens.json"
    link.symlink_to("kept/tokens.json")
    (tmp_path / "kept").mkdir()

    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tasks-per-user", "1", "--tokens-file", link]
    )

    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    target = tmp_path / "kept" / "tokens.json"
    assert list(json.loads(target.read_text())) == ["alice"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        # /dev/full takes the open and refuses the bytes
        ("/dev/full", "No space left on device"),
        # a folder that does not exist
        ("missing/tokens.json", "No such file or directory"),
    ],
)
def test_tokens_that_cannot_be_written_fail_the_seed_before_it_writes(app, tmp_path, name, reason):
    path = name if name.startswith("/") else str(tmp_path / name)

    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tasks-per-user", "2", "--tokens-file", path]
    )

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: cannot write {path}: {reason}\n"
    assert all_tasks(app) == []
    assert os.listdir(tmp_path) == []


def test_a_tokens_file_of_the_longest_name_is_written(app, tmp_path):
    # Its staging file cannot be ".NAME.partial": that would be too long a name.
    tokens_file = tmp_path / ("t" * 255)

    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tasks-per-user", "1", "--tokens-file", tokens_file]
    )

    assert result.exit_code == 0, result.output
    assert list(json.loads(tokens_file.read_text())) == ["alice"]
    assert os.listdir(tmp_path) == ["t" * 255]


def test_a_seed_that_fails_leaves_the_tokens_file_as_it_was(app, tmp_path, monkeypatch):
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text('{"before": "token"}\n')

    def failing_seed(*args):
        raise sa.exc.OperationalError("INSERT", {}, Exception("the database went away"))

    monkeypatch.setattr(seeding, "seed", failing_seed)
    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tokens-file", str(tokens_file)]
    )

    assert result.exit_code == 1
    assert result.stderr.endswith("Error: database unreachable: the database went away\n")
    assert tokens_file.read_text() == '{"before": "token"}\n'
    assert os.listdir(tmp_path) == ["tokens.json"]


def test_ctrl_c_is_held_during_a_seed_and_its_handler_put_back(app, monkeypatch):
    # Held between batches while seeding; a Ctrl-C that was ignored (as in a shell's
    # background job) stays ignored, and whatever was there before is there after.
    seen_while_seeding = []
    seed = seeding.seed

    def seed_noting_the_handler(*args):
        seen_while_seeding.append(signal.getsignal(signal.SIGINT))
        return seed(*args)

    monkeypatch.setattr(seeding, "seed", seed_noting_the_handler)
    invoke = app.test_cli_runner().invoke
    arguments = ["seed", "--user-id", "alice", "--tasks-per-user", "1"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    held = invoke(tasks, arguments)
    after_held = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ignored = invoke(tasks, arguments)
        after_ignored = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)

    assert (held.exit_code, ignored.exit_code) == (0, 0)
    assert seen_while_seeding[0] not in (signal.default_int_handler, signal.SIG_IGN)  # held
    assert seen_while_seeding[1] is signal.SIG_IGN
    assert (after_held, after_ignored) == (signal.default_int_handler, signal.SIG_IGN)


def test_tokens_file_without_a_secret_is_refused_before_writing(make_app, tmp_path):
    app = make_app(JWT_SECRET=None, JWT_JWKS_URL="https://idp.example/jwks", SECRET_KEY="k" * 32)
    tokens_file = tmp_path / "tokens.json"

    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tokens-file", str(tokens_file)]
    )

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: --tokens-file: no JWT_SECRET: only the identity provider can issue tokens\n"
    )
    assert all_tasks(app) == []
    assert not tokens_file.exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--completed-ratio", "1.5"], "Invalid value for '--completed-ratio'"),
        (["--completed-ratio", "nan"], "'--completed-ratio': 'nan' is not a finite number."),
        (["--tasks-per-user", "0"], "Invalid value for '--tasks-per-user'"),
        (["--users", "-1"], "Invalid value for '--users'"),
        (["--user-id", ""], "Invalid value for '--user-id'"),
        (["--user-id", "a\x00b"], "'--user-id': must be UTF-8 text without NUL characters"),
        (["--user-id", "caf\udce9"], "'--user-id': must be UTF-8 text without NUL characters"),
        (["--users", "0"], "nothing to seed: give --users N or --user-id ID"),
        (["--users", "1000", "--tasks-per-user", "50001"], "50,001,000 tasks is more than"),
        (["--tokens-file", ""], "Invalid value for '--tokens-file': must not be empty"),
        (["--token-ttl", "soon", "--tokens-file", "t.json"], "'soon' is not a duration"),
        (
            ["--token-ttl", "99999999999999999999d", "--tokens-file", "t.json"],
            "'99999999999999999999d' is not a duration like 900s, 15m, 1h or 7d (at most 3650d)",
        ),
    ],
)
def test_bad_options_are_one_line_errors(app, arguments, message):
    result = app.test_cli_runner().invoke(tasks, ["seed", *arguments])

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert all_tasks(app) == []


def test_a_bad_token_ttl_is_a_usage_error_before_the_database_is_tried(backend, tmp_path):
    app = create_app(base_config(unreachable_url(backend, tmp_path)))

    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--token-ttl", "soon", "--tokens-file", "t.json"]
    )

    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: Invalid value for '--token-ttl':"
        " 'soon' is not a duration like 900s, 15m, 1h or 7d (at most 3650d)\n"
    )


def test_an_unwritable_tokens_file_stops_before_seeding(app, tmp_path):
    path = tmp_path / "missing" / "tokens.json"

    result = app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tokens-file", str(path)]
    )

    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write {path}: No such file or directory\n"
    assert all_tasks(app) == []


REFUSE_INSERTS = {
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON tasks"
        " BEGIN SELECT RAISE(ABORT, 'tasks are read-only'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'tasks are read-only'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}


@pytest.fixture
def refusing_app(backend, tmp_path):
    """An app on a database of its own that is up to date but refuses every new task."""
    with fresh_database(backend, tmp_path) as url:
        app = create_app(base_config(url))
        with app.app_context():
            for statement in REFUSE_INSERTS[backend]:
                db.session.execute(sa.text(statement))
            db.session.commit()
        yield app
        with app.app_context():
            db.engine.dispose()


def test_a_seed_that_fails_creates_no_tokens_file(refusing_app, tmp_path):
    tokens_file = tmp_path / "tokens.json"

    result = refusing_app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tokens-file", str(tokens_file)]
    )

    assert result.exit_code == 1
    assert result.stderr == "Seeding\nError: database error: tasks are read-only\n"
    assert not tokens_file.exists()
    assert all_tasks(refusing_app) == []


def test_a_seed_that_fails_leaves_an_existing_tokens_file_as_it_was(refusing_app, tmp_path):
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text('{"bob": "an earlier token"}\n')
    tokens_file.chmod(0o640)

    result = refusing_app.test_cli_runner().invoke(
        tasks, ["seed", "--user-id", "alice", "--tokens-file", str(tokens_file)]
    )

    assert result.exit_code == 1
    assert tokens_file.read_text() == '{"bob": "an earlier token"}\n'
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o640


# The seed's tenth INSERT, in the middle of psycopg's pipeline, waits for a lock
# that the test holds: Ctrl-C comes then, and is held until the batch is done.
HOLD_THE_TENTH_TASK = [
    "CREATE SEQUENCE seeded",
    "GRANT USAGE ON SEQUENCE seeded TO PUBLIC",  # the seed acts as the operator role
    "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF nextval('seeded') = 10 THEN PERFORM pg_advisory_xact_lock(42); END IF;"
    " RETURN NEW; END $$",
    "CREATE TRIGGER hold BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION hold()",
]


@contextlib.contextmanager
def seed_waiting_at_its_tenth_task(backend, tmp_path, *options):
    """A `flask tasks seed` of 20 tasks in a subprocess, once its tenth INSERT waits
    for the lock held here: (the process, its backend's pid, an autocommit
    connection, the connection that holds the lock)."""
    command = [sys.executable, "-m", "flask", "tasks", "seed", "--user-id", "alice"]
    command += ["--tasks-per-user", "20", *options]
    waiting = sa.text(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with fresh_database(backend, tmp_path) as url:
        engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
        try:
            with (
                engine.connect() as locker,
                engine.connect().execution_options(isolation_level="AUTOCOMMIT") as observer,
            ):
                for statement in HOLD_THE_TENTH_TASK:
                    locker.execute(sa.text(statement))
                locker.commit()
                locker.execute(sa.text("SELECT pg_advisory_lock(42)"))
                with subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=command_environment(url),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ) as seed:
                    try:
                        assert wait_until(lambda: observer.execute(waiting).first() is not None)
                        yield seed, observer.execute(waiting).scalar(), observer, locker
                    finally:
                        seed.kill()
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_ctrl_c_during_a_seed_aborts_in_one_line_and_writes_nothing(backend, tmp_path):
    tokens_file = tmp_path / "tokens.json"
    with seed_waiting_at_its_tenth_task(backend, tmp_path, "--tokens-file", str(tokens_file)) as (
        seed,
        _,
        observer,
        locker,
    ):
        seed.send_signal(signal.SIGINT)
        locker.execute(sa.text("SELECT pg_advisory_unlock(42)"))
        stdout, stderr = seed.communicate(timeout=60)
        tasks_left = observer.execute(sa.text("SELECT count(*) FROM tasks")).scalar()
        # Sequences ignore rollbacks: the batch's 20 INSERTs ran, none was cancelled.
        inserted = observer.execute(sa.text("SELECT last_value FROM seeded")).scalar()

    # click's own Ctrl-C ending: a new line (after the terminal's ^C), then "Aborted!"
    assert (seed.returncode, stdout, stderr) == (1, "", "Seeding\n\nAborted!\n")
    assert (tasks_left, inserted) == (0, 20)
    assert not tokens_file.exists()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_connection_lost_during_a_seed_is_one_line_and_writes_nothing(backend, tmp_path):
    with seed_waiting_at_its_tenth_task(backend, tmp_path) as (seed, pid, observer, locker):
        observer.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        stdout, stderr = seed.communicate(timeout=60)
        locker.execute(sa.text("SELECT pg_advisory_unlock(42)"))
        tasks_left = observer.execute(sa.text("SELECT count(*) FROM tasks")).scalar()

    assert (seed.returncode, stdout, tasks_left) == (1, "", 0)
    assert stderr == (
        "Seeding\nError: database unreachable: consuming input failed:"
        " server closed the connection unexpectedly\n"
    )
