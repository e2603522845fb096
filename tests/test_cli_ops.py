"""Operator commands: stats, export/import, purge-user, doctor, and every error path"""

import http.server
import io
import json
import os
import stat
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager

import click
import flask_migrate
import idp
import pytest
import sqlalchemy as sa
from conftest import base_config, postgres_admin_url
from ops_support import ROOT, command_environment, free_port, fresh_database, unreachable_url

from cli import tasks
from todo import admin, create_app, doctor, rls, transfer
from todo.extensions import db
from todo.models import Task

COMMANDS = (
    "token",
    "seed",
    "bench",
    "stats",
    "export",
    "import",
    "purge-user",
    "doctor",
    "expire-idempotency-keys",
)


def invoke(app, *arguments, **kwargs):
    return app.test_cli_runner().invoke(tasks, [str(a) for a in arguments], **kwargs)


def count_tasks(app, user_id=None):
    with app.app_context(), rls.bypass():
        statement = sa.select(sa.func.count()).select_from(Task)
        if user_id is not None:
            statement = statement.where(Task.user_id == user_id)
        return db.session.scalar(statement)


def make_tasks(client, user_id, *titles, completed=()):
    """Create tasks through the API; returns their JSON as the API gives it."""
    created = []
    for title in titles:
        body = {"title": title, "description": f"about {title}", "is_completed": title in completed}
        response = client.post(f"/api/{user_id}/tasks", json=body)
        assert response.status_code == 201
        created.append(response.json["data"])
    return created


def api_tasks(client, user_id):
    response = client.get(f"/api/{user_id}/tasks?limit=1000&sort=created_at")
    return response.json["data"]


# Help


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(app, command):
    result = invoke(app, command, "--help")

    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"flask tasks {command}" in result.stdout


def test_every_command_is_checked_for_help(app):
    assert sorted(tasks.commands) == sorted(COMMANDS)


# stats


def test_stats_on_an_empty_database(app):
    result = invoke(app, "stats", "--json")

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["tasks"] == figures["users"] == figures["completed"] == 0
    assert figures["completed_share"] is None
    assert figures["top_users"] == []
    assert figures["tasks_per_user"]["p50"] is None


def test_stats_counts_tasks_users_and_shares(app, alice, bob, client_for, backend):
    make_tasks(alice, "alice", "a1", "a2", "a3", completed=("a1",))
    make_tasks(bob, "bob", "b1", "b2", completed=("b1", "b2"))
    make_tasks(client_for("carol"), "carol", "c1")

    result = invoke(app, "stats", "--json", "--top", "2")

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["backend"] == backend
    assert (figures["tasks"], figures["users"], figures["completed"]) == (6, 3, 3)
    assert figures["completed_share"] == 0.5
    assert figures["tasks_per_user"] == {
        "min": 1,
        "mean": 2.0,
        "p50": 2,
        "p90": 3,
        "p99": 3,
        "max": 3,
    }
    assert figures["top_users"] == [
        {"user_id": "alice", "tasks": 3},
        {"user_id": "bob", "tasks": 2},
    ]
    if backend == "postgresql":
        assert [table["table"] for table in figures["storage"]] == [
            "idempotency_keys",
            "task_revisions",
            "tasks",
        ]
        assert set(figures["storage"][1]["indexes"]) == {
            "pk_task_revisions",
            "ix_task_revisions_revision",
        }
        table = figures["storage"][2]
        assert set(table["indexes"]) == {
            "pk_tasks",
            "ix_tasks_user_created",
            "ix_tasks_user_updated",
            "ix_tasks_user_title",
        }
        assert table["total_bytes"] >= table["table_bytes"] + table["indexes_bytes"] > 0
    else:
        assert figures["database_bytes"] > 0


def test_stats_as_text(app, alice, backend):
    make_tasks(alice, "alice", "a1", "a2", completed=("a2",))

    result = invoke(app, "stats")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        "tasks            2",
        "users            1",
        "completed        1 (50.0%)",
        "tasks per user   min 2  mean 2.0  p50 2  p90 2  p99 2  max 2",
        "top 1 users",
        "  alice         2",
    ]
    assert any(line.startswith("table tasks: ") for line in lines) == (backend == "postgresql")


# export / import


def test_export_to_stdout_is_the_api_representation(app, alice, bob):
    make_tasks(alice, "alice", "Buy milk", "Call Ann", "Ünïcode ✓", completed=("Call Ann",))
    make_tasks(bob, "bob", "not alice's")

    result = invoke(app, "export", "--user-id", "alice")

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == api_tasks(alice, "alice")
    assert list(lines[0]) == [
        "id",
        "user_id",
        "title",
        "description",
        "is_completed",
        "completed_at",
        "created_at",
        "updated_at",
    ]
    assert "Ünïcode ✓" in result.stdout  # UTF-8, not \u escapes
    assert result.stderr == "Exported 3 tasks of 'alice'.\n"


def test_export_to_a_file_then_import_round_trips_exactly(app, alice, tmp_path):
    make_tasks(alice, "alice", "one", "two", "three", completed=("two",))
    before = api_tasks(alice, "alice")
    path = tmp_path / "alice.jsonl"

    exported = invoke(app, "export", "--user-id", "alice", "--output", path)
    purged = invoke(app, "purge-user", "--user-id", "alice", "--yes")
    imported = invoke(app, "import", path, "--user-id", "alice")

    assert exported.exit_code == purged.exit_code == imported.exit_code == 0
    assert exported.stdout == f"Exported 3 tasks of 'alice' to {path}.\n"
    assert imported.stdout == "Imported 3 tasks for 'alice'.\n"
    assert api_tasks(alice, "alice") == before
    assert [json.loads(line) for line in path.read_text().splitlines()] == before
    assert not list(tmp_path.glob(".*partial"))


def test_import_into_another_user_keeps_ids_and_times(app, alice, bob, tmp_path):
    make_tasks(alice, "alice", "one", "two", completed=("one",))
    path = tmp_path / "alice.jsonl"
    invoke(app, "export", "--user-id", "alice", "--output", path)

    result = invoke(app, "import", path, "--user-id", "bob")

    assert result.exit_code == 0, result.output
    expected = [{**task, "user_id": "bob"} for task in api_tasks(alice, "alice")]
    assert api_tasks(bob, "bob") == expected


def test_import_with_new_ids_rekeys_and_keeps_the_rest(app, alice, tmp_path):
    make_tasks(alice, "alice", "one", "two", completed=("two",))
    before = api_tasks(alice, "alice")
    path = tmp_path / "alice.jsonl"
    invoke(app, "export", "--user-id", "alice", "--output", path)

    result = invoke(app, "import", path, "--user-id", "alice", "--new-ids")

    assert result.exit_code == 0, result.output
    after = api_tasks(alice, "alice")
    assert len(after) == 4
    copies = [task for task in after if task["id"] not in {t["id"] for t in before}]
    strip = lambda task: {k: v for k, v in task.items() if k != "id"}  # noqa: E731
    assert sorted(map(json.dumps, map(strip, copies))) == sorted(
        map(json.dumps, map(strip, before))
    )


def test_import_of_existing_ids_writes_nothing(app, alice, tmp_path):
    make_tasks(alice, "alice", "one", "two")
    path = tmp_path / "alice.jsonl"
    invoke(app, "export", "--user-id", "alice", "--output", path)

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: 2 task id(s) already exist for 'alice' (e.g. ")
    assert result.stderr.endswith("nothing imported; use --new-ids to re-key\n")
    assert count_tasks(app) == 2


GOOD = {
    "id": "8b0c2f4e-5d1a-4c3e-9f3a-0d6c1b2a7e90",
    "user_id": "someone",
    "title": "Buy milk",
    "description": None,
    "is_completed": False,
    "completed_at": None,
    "created_at": "2026-01-14T10:00:00.123456Z",
    "updated_at": "2026-01-14T10:00:00.123456Z",
}


OUT_OF_RANGE = "Must be in the years 1000 to 9999 in UTC."


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"title": "   "}, "title: Length must be between 1 and 500."),
        ({"title": "x" * 501}, "title: Length must be between 1 and 500."),
        ({"title": "a\x00b"}, "title: Must not contain NUL characters."),
        ({"description": "d" * 10_001}, "description: Longer than maximum length 10000."),
        ({"is_completed": "yes"}, "is_completed: Not a valid boolean."),
        ({"is_completed": True}, "completed_at: Must be set exactly when is_completed is true."),
        (
            {"completed_at": "2026-01-14T10:00:00.123456Z"},
            "completed_at: Must be set exactly when is_completed is true.",
        ),
        ({"created_at": "2026-01-14T10:00:00"}, "created_at: Not a valid aware datetime."),
        ({"updated_at": "2026-01-13T10:00:00Z"}, "updated_at: Must not be before created_at."),
        *[
            (
                {
                    "is_completed": True,
                    "completed_at": moment,
                    "updated_at": "2026-01-15T10:00:00Z",
                },
                "completed_at: Must be between created_at and updated_at.",
            )
            for moment in ("2026-01-13T10:00:00Z", "2026-01-15T10:00:00.000001Z")
        ],
        # The API shows four-digit years in UTC: an export must import back.
        ({"created_at": "0999-12-31T23:59:59Z"}, f"created_at: {OUT_OF_RANGE}"),
        ({"updated_at": "9999-12-31T23:30:00-01:00"}, f"updated_at: {OUT_OF_RANGE}"),
        ({"created_at": "0001-01-01T00:30:00+01:00"}, f"created_at: {OUT_OF_RANGE}"),
        ({"id": "not-a-uuid"}, "id: Not a valid UUID."),
        ({"id": None}, "id: Field may not be null."),
        ({"colour": "red"}, "colour: Unknown field."),
    ],
)
def test_import_checks_each_line_like_the_api(app, tmp_path, changes, message):
    path = tmp_path / "tasks.jsonl"
    good = json.dumps(GOOD)
    bad = json.dumps({**GOOD, "id": "1b0c2f4e-5d1a-4c3e-9f3a-0d6c1b2a7e91", **changes})
    path.write_text(f"{good}\n{bad}\n")

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == f"{path}:2: {message}\nError: 1 bad line(s): nothing imported\n"
    assert count_tasks(app) == 0


def test_import_reports_every_bad_line_by_number(app, tmp_path):
    path = tmp_path / "tasks.jsonl"
    lines = [json.dumps(GOOD), "not json", "", "[1, 2]", json.dumps(GOOD), '{"title": "x"']
    path.write_text("\n".join(lines) + "\n")

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    reported = [line.split(": ")[0] for line in result.stderr.splitlines()]
    assert reported == [f"{path}:2", f"{path}:4", f"{path}:5", f"{path}:6", "Error"]
    assert f"{path}:5: id 8b0c2f4e-5d1a-4c3e-9f3a-0d6c1b2a7e90 repeats line 1" in result.stderr
    assert "Error: 4 bad line(s): nothing imported" in result.stderr
    assert count_tasks(app) == 0


@pytest.mark.parametrize(
    "line, message",
    [
        ("[" * 100_000 + "]" * 100_000, "not JSON (nested too deeply)"),
        ('{"id": 1' + "0" * 5000 + "}", "not JSON (a number with too many digits)"),
    ],
)
def test_import_of_json_that_python_cannot_parse_is_a_bad_line(app, tmp_path, line, message):
    path = tmp_path / "tasks.jsonl"
    path.write_text(f"{json.dumps(GOOD)}\n{line}\n")

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == f"{path}:2: {message}\nError: 1 bad line(s): nothing imported\n"
    assert count_tasks(app) == 0


def test_import_of_a_line_longer_than_any_task_is_a_bad_line_not_held_whole(app, tmp_path):
    path = tmp_path / "tasks.jsonl"
    longest = transfer.MAX_LINE_CHARS
    # Line 2 has no end for 2.5 million characters; line 3 is JSON of exactly the limit.
    padded = json.dumps(GOOD)[:-1] + " " * (longest - len(json.dumps(GOOD))) + "}"
    assert len(padded) == longest
    # Line 4 starts with more spaces than the limit: not a blank line to skip.
    spaced = " " * (longest + 1) + json.dumps({**GOOD, "id": str(uuid.uuid4())})
    path.write_text(f"{json.dumps(GOOD)}\n{'x' * 2_500_000}\n{padded}\n{spaced}\n")

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:2: longer than 1,000,000 characters (no task is)\n"
        f"{path}:3: id 8b0c2f4e-5d1a-4c3e-9f3a-0d6c1b2a7e90 repeats line 1\n"
        f"{path}:4: longer than 1,000,000 characters (no task is)\n"
        "Error: 3 bad line(s): nothing imported\n"
    )
    assert count_tasks(app) == 0


def test_a_bad_line_is_reported_on_one_line_whatever_its_field_names(app, tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({**GOOD, "ti\ntle\t\x85\u2028": "x"}) + "\n")

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:1: ti\\ntle\\t\\x85\\u2028: Unknown field.\n"
        "Error: 1 bad line(s): nothing imported\n"
    )
    assert count_tasks(app) == 0


def test_bounded_lines_cut_a_long_line_and_read_past_the_rest():
    stream = io.StringIO("abcd\n" + "x" * 11 + "\nabcde\nlast")

    assert list(transfer.bounded_lines(stream, limit=4)) == ["abcd\n", "xxxxx", "abcde", "last"]


def test_imported_titles_are_found_and_sorted_case_insensitively(app, alice, tmp_path):
    path = tmp_path / "tasks.jsonl"
    lines = [
        {**GOOD, "id": str(uuid.uuid4()), "title": "Buy MILK"},
        {**GOOD, "id": str(uuid.uuid4()), "title": "apples"},
        {**GOOD, "id": str(uuid.uuid4()), "title": "Zebra"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 0, result.output
    found = alice.get("/api/alice/tasks", query_string={"q": "milk"}).json["data"]
    assert [task["title"] for task in found] == ["Buy MILK"]
    by_title = alice.get("/api/alice/tasks", query_string={"sort": "title"}).json["data"]
    assert [task["title"] for task in by_title] == ["apples", "Buy MILK", "Zebra"]


def test_import_of_good_lines_from_stdin_normalises_times_to_utc(app, alice):
    line = json.dumps(
        {**GOOD, "created_at": "2026-01-14T12:00:00.5+02:00", "updated_at": "2026-01-14T10:00:01Z"}
    )

    result = invoke(app, "import", "-", "--user-id", "alice", input=line + "\n")

    assert result.exit_code == 0, result.output
    (task,) = api_tasks(alice, "alice")
    assert task == {
        **GOOD,
        "user_id": "alice",
        "created_at": "2026-01-14T10:00:00.500000Z",
        "updated_at": "2026-01-14T10:00:01.000000Z",
    }


def test_import_skips_a_byte_order_mark_at_the_start(app, alice, tmp_path):
    # Windows editors start UTF-8 files with one; anywhere else it is still refused.
    bom = b"\xef\xbb\xbf"
    at_start, on_line_2 = tmp_path / "at-start.jsonl", tmp_path / "on-line-2.jsonl"
    at_start.write_bytes(bom + json.dumps(GOOD).encode() + b"\n")
    on_line_2.write_bytes(b"\n" + bom + json.dumps(GOOD).encode() + b"\n")
    piped = bom + json.dumps({**GOOD, "id": str(uuid.uuid4())}).encode() + b"\n"

    from_file = invoke(app, "import", str(at_start), "--user-id", "alice")
    from_stdin = invoke(app, "import", "-", "--user-id", "alice", input=piped)
    refused = invoke(app, "import", str(on_line_2), "--user-id", "bob")

    assert (from_file.exit_code, from_file.stdout) == (0, "Imported 1 tasks for 'alice'.\n")
    assert (from_stdin.exit_code, from_stdin.stdout) == (0, "Imported 1 tasks for 'alice'.\n")
    assert len(api_tasks(alice, "alice")) == 2
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"{on_line_2}:2: not JSON (Unexpected UTF-8 BOM")


LATIN_1_ON_LINE_3 = f'{json.dumps(GOOD)}\n\n{{"title": "caf\xe9"}}\n'.encode("latin-1")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "Error: the file holds no tasks\n"),
        (b"\n\n", "Error: the file holds no tasks\n"),
        (b"\xff\xfe{}\n", "Error: line 1 is not UTF-8 text\n"),
        (LATIN_1_ON_LINE_3, "Error: line 3 is not UTF-8 text\n"),
    ],
)
def test_import_of_an_empty_or_binary_file(app, tmp_path, content, message):
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(content)

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == message


def test_import_from_stdin_names_the_line_that_is_not_utf_8(app):
    result = invoke(app, "import", "-", "--user-id", "alice", input=LATIN_1_ON_LINE_3)

    assert result.exit_code == 1
    assert result.stderr == "Error: line 3 is not UTF-8 text\n"
    assert count_tasks(app) == 0


# Import in batches: two rows each here, so that a few lines make several.


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(transfer, "BATCH_SIZE", 2)


@contextmanager
def task_inserts(app):
    """The number of rows of each INSERT INTO tasks sent to the database in the block."""
    sizes = []

    def record(*arguments):
        _connection, _cursor, statement, parameters, _context, executemany = arguments
        if statement.startswith("INSERT INTO tasks "):
            sizes.append(len(parameters) if executemany else 1)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sizes
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def good_line(number, **changes):
    """An export line whose id ends in `number`."""
    return json.dumps({**GOOD, "id": f"8b0c2f4e-5d1a-4c3e-9f3a-{number:012d}", **changes})


def test_import_writes_batch_by_batch(app, alice, small_batches, tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(f"{good_line(n)}\n" for n in range(1, 6)))

    with task_inserts(app) as sizes:
        result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Imported 5 tasks for 'alice'.\n"
    assert sizes == [2, 2, 1]
    assert [task["id"][-1] for task in api_tasks(alice, "alice")] == list("12345")


def test_a_bad_line_after_the_first_batches_rolls_them_back(app, small_batches, tmp_path):
    path = tmp_path / "tasks.jsonl"
    lines = [*map(good_line, range(1, 5)), "not json", good_line(6), "[7]", good_line(8)]
    path.write_text("\n".join(lines) + "\n")

    with task_inserts(app) as sizes:
        result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:5: not JSON (Expecting value: line 1 column 1 (char 0))\n"
        f"{path}:7: not a JSON object\n"
        "Error: 2 bad line(s): nothing imported\n"
    )
    assert sizes == [2, 2]  # lines 1 to 4 went in, then out again
    assert count_tasks(app) == 0


def test_ids_repeated_across_batches_are_bad_lines(app, small_batches, tmp_path):
    path = tmp_path / "tasks.jsonl"
    lines = [good_line(1), "", good_line(2), good_line(3), good_line(1), good_line(4)]
    path.write_text("\n".join([*lines, good_line(3)]) + "\n")

    with task_inserts(app) as sizes:
        result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:5: id 8b0c2f4e-5d1a-4c3e-9f3a-000000000001 repeats line 1\n"
        f"{path}:7: id 8b0c2f4e-5d1a-4c3e-9f3a-000000000003 repeats line 4\n"
        "Error: 2 bad line(s): nothing imported\n"
    )
    assert sizes == [2]
    assert count_tasks(app) == 0


def test_bad_lines_past_those_reported_are_counted_in_every_batch(
    app, small_batches, monkeypatch, tmp_path
):
    monkeypatch.setattr(transfer, "MAX_REPORTED", 2)
    path = tmp_path / "tasks.jsonl"
    lines = [good_line(n, title=" ") if n % 2 else good_line(n) for n in range(1, 10)]
    path.write_text("\n".join(lines) + "\n")

    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:1: title: Length must be between 1 and 500.\n"
        f"{path}:3: title: Length must be between 1 and 500.\n"
        "... and 3 more\n"
        "Error: 5 bad line(s): nothing imported\n"
    )
    assert count_tasks(app) == 0


def test_existing_ids_in_later_batches_roll_back_the_first(app, alice, small_batches, tmp_path):
    existing = [task["id"] for task in make_tasks(alice, "alice", "kept", "also kept")]
    before = api_tasks(alice, "alice")
    path = tmp_path / "tasks.jsonl"
    mine = [json.dumps({**GOOD, "id": task_id}) for task_id in existing]
    lines = [*map(good_line, range(1, 5)), mine[0], good_line(6), mine[1], good_line(8)]
    path.write_text("\n".join(lines) + "\n")

    with task_inserts(app) as sizes:
        result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: 2 task id(s) already exist for 'alice' (e.g. {existing[0]}):"
        " nothing imported; use --new-ids to re-key\n"
    )
    assert sizes == [2, 2, 2]  # the third batch is refused, and the first two undone
    assert api_tasks(alice, "alice") == before


def test_new_ids_take_a_file_whose_ids_repeat_across_batches(app, alice, small_batches, tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(f"{good_line(1)}\n" * 5)

    result = invoke(app, "import", path, "--user-id", "alice", "--new-ids")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Imported 5 tasks for 'alice'.\n"
    assert len({task["id"] for task in api_tasks(alice, "alice")}) == 5


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has one writer at a time
def test_the_api_writes_for_the_user_while_an_import_is_under_way(
    app, alice, backend, small_batches
):
    """The import's transaction stays open while it reads; the user's revision is
    bumped only at its end, so that the API does not wait on it meanwhile."""
    make_tasks(alice, "alice", "before")
    statuses = []

    def lines():
        yield good_line(1)
        yield good_line(2)
        # Asked for the third line, the import has written the first two.
        statuses.append(alice.post("/api/alice/tasks", json={"title": "meanwhile"}).status_code)
        yield good_line(3)

    with app.app_context(), rls.bypass():
        count = transfer.import_lines(lines(), "alice")

    assert (statuses, count) == ([201], 3)
    assert sorted(task["title"] for task in api_tasks(alice, "alice")) == [
        "Buy milk",
        "Buy milk",
        "Buy milk",
        "before",
        "meanwhile",
    ]


def test_import_of_a_missing_file(app, tmp_path):
    result = invoke(app, "import", tmp_path / "nope.jsonl", "--user-id", "alice")

    assert result.exit_code == 2
    assert "Invalid value for 'FILE'" in result.stderr
    assert "No such file or directory" in result.stderr


def test_export_of_a_missing_user(app, alice):
    make_tasks(alice, "alice", "one")

    result = invoke(app, "export", "--user-id", "alise")

    assert result.exit_code == 1
    assert result.stderr == "Error: user 'alise' has no tasks (check the id)\n"


@pytest.mark.parametrize("name", ["no/x.jsonl", "a" * 300])  # missing folder, name too long
def test_export_to_an_unwritable_place(app, alice, tmp_path, name):
    make_tasks(alice, "alice", "one")
    target = tmp_path / name

    result = invoke(app, "export", "--user-id", "alice", "--output", target)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot write {target}: ")
    assert len(result.stderr.splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_export_into_a_pipe_writes_into_it(app, alice, tmp_path):
    """A FIFO or a device (/dev/null) is written into, never replaced by a regular file."""
    make_tasks(alice, "alice", "one", "two")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = invoke(app, "export", "--user-id", "alice", "--output", pipe)
        received = os.read(reader, 65536).decode()
    finally:
        os.close(reader)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Exported 2 tasks of 'alice' to {pipe}.\n"
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert [json.loads(line) for line in received.splitlines()] == api_tasks(alice, "alice")
    assert not list(tmp_path.glob(".*partial"))


def test_export_to_dev_stdout_appends_to_the_file_the_shell_opened(backend, tmp_path):
    # `export -o /dev/stdout >> log`: /dev/stdout leads to the log itself, which must
    # be written into (at its end), not replaced by the export.
    log = tmp_path / "log.jsonl"
    log.write_text("an earlier line\n")
    flask = [sys.executable, "-m", "flask", "tasks"]
    with fresh_database(backend, tmp_path) as url:
        environment = command_environment(url)
        seeded = subprocess.run(
            [*flask, "seed", "--user-id", "alice", "--tasks-per-user", "2"],
            check=False,
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
        )
        with log.open("a") as appended:
            exported = subprocess.run(
                [*flask, "export", "--user-id", "alice", "-o", "/dev/stdout"],
                check=False,
                cwd=ROOT,
                env=environment,
                stdout=appended,
                stderr=subprocess.PIPE,
                text=True,
            )

    assert seeded.returncode == 0, seeded.stderr
    assert (exported.returncode, exported.stderr) == (0, "")
    lines = log.read_text().splitlines()
    assert lines[0] == "an earlier line"
    assert [json.loads(line)["user_id"] for line in lines[1:3]] == ["alice", "alice"]
    assert lines[3:] == ["Exported 2 tasks of 'alice' to /dev/stdout."]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_export_through_a_symlink_replaces_its_target(app, alice, tmp_path):
    make_tasks(alice, "alice", "one", "two")
    (tmp_path / "data").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "data" / "alice.jsonl"
    target.write_text("the previous export\n")
    link = tmp_path / "links" / "latest.jsonl"
    link.symlink_to("../data/alice.jsonl")

    result = invoke(app, "export", "--user-id", "alice", "--output", link)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Exported 2 tasks of 'alice' to {link}.\n"
    assert os.readlink(link) == "../data/alice.jsonl"
    assert [json.loads(line) for line in target.read_text().splitlines()] == api_tasks(
        alice, "alice"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "alice.jsonl",
        "data",
        "latest.jsonl",
        "links",
    ]


def test_export_through_a_dangling_symlink_creates_its_target(app, alice, tmp_path):
    make_tasks(alice, "alice", "one")
    link = tmp_path / "latest.jsonl"
    link.symlink_to("alice.jsonl")

    result = invoke(app, "export", "--user-id", "alice", "--output", link)

    assert result.exit_code == 0, result.output
    assert os.readlink(link) == "alice.jsonl"
    assert [json.loads(line) for line in link.read_text().splitlines()] == api_tasks(alice, "alice")
    assert sorted(os.listdir(tmp_path)) == ["alice.jsonl", "latest.jsonl"]


def test_export_through_a_symlink_into_a_missing_folder(app, alice, tmp_path):
    make_tasks(alice, "alice", "one")
    link = tmp_path / "latest.jsonl"
    link.symlink_to("gone/alice.jsonl")

    result = invoke(app, "export", "--user-id", "alice", "--output", link)

    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write {link}: No such file or directory\n"
    assert os.readlink(link) == "gone/alice.jsonl"
    assert os.listdir(tmp_path) == ["latest.jsonl"]


def test_export_through_a_loop_of_symlinks(app, alice, tmp_path):
    make_tasks(alice, "alice", "one")
    (tmp_path / "a.jsonl").symlink_to("b.jsonl")
    (tmp_path / "b.jsonl").symlink_to("a.jsonl")

    result = invoke(app, "export", "--user-id", "alice", "--output", tmp_path / "a.jsonl")

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot write {tmp_path / 'a.jsonl'}: Too many levels of symbolic links\n"
    )
    assert [os.readlink(tmp_path / name) for name in ("a.jsonl", "b.jsonl")] == [
        "b.jsonl",
        "a.jsonl",
    ]
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "b.jsonl"]


# purge-user


def test_purge_asks_first_and_keeps_everything_on_no(app, alice):
    make_tasks(alice, "alice", "one", "two")

    result = invoke(app, "purge-user", "--user-id", "alice", input="n\n")

    assert result.exit_code == 1
    prompt = "Delete 2 rows from tasks, 1 rows from task_revisions for user 'alice'? [y/N]"
    assert prompt in result.stderr
    assert "Aborted!" in result.stderr
    assert count_tasks(app, "alice") == 2


def test_purge_holds_no_transaction_while_it_asks(app, alice, monkeypatch):
    """On PostgreSQL an open transaction keeps its locks while the operator thinks: a
    migration's ALTER TABLE would wait behind it, and every request behind that."""
    make_tasks(alice, "alice", "one")
    in_transaction = []

    def confirm(*args, **kwargs):
        in_transaction.append(db.session().in_transaction())
        raise click.Abort

    monkeypatch.setattr(click, "confirm", confirm)

    result = invoke(app, "purge-user", "--user-id", "alice")

    assert result.exit_code == 1
    assert in_transaction == [False]
    assert count_tasks(app, "alice") == 1


def test_purge_deletes_only_that_user_after_yes(app, alice, bob):
    make_tasks(alice, "alice", "one", "two")
    make_tasks(bob, "bob", "three")

    result = invoke(app, "purge-user", "--user-id", "alice", input="y\n")

    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "Deleted 2 rows from tasks, 1 rows from task_revisions, 0 rows from idempotency_keys"
        " (user 'alice').\n"
    )
    assert count_tasks(app, "alice") == 0
    assert count_tasks(app, "bob") == 1


def test_purge_of_a_missing_user(app, alice):
    make_tasks(alice, "alice", "one")

    result = invoke(app, "purge-user", "--user-id", "alise", "--yes")

    assert result.exit_code == 1
    assert result.stderr == ("Error: user 'alise' has no rows (check the id): nothing to delete\n")
    assert count_tasks(app) == 1


def test_purge_covers_every_table_with_a_user_id(app, alice, bob, backend):
    """A table added later (idempotency records...) is purged without changing purge."""
    notes = sa.Table(
        "test_user_notes",
        db.metadata,
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("note", sa.String(50), primary_key=True),
    )
    try:
        with app.app_context():
            notes.create(db.engine)
            if backend == "postgresql":  # as a migration would: see migrations/0003
                db.session.execute(
                    sa.text(f'GRANT ALL ON test_user_notes TO "{db.engine.url.database}_operator"')
                )
            db.session.execute(
                notes.insert(),
                [{"user_id": "alice", "note": n} for n in ("a", "b", "c")]
                + [{"user_id": "bob", "note": "d"}],
            )
            db.session.commit()
        make_tasks(alice, "alice", "one")

        result = invoke(app, "purge-user", "--user-id", "alice", "--yes")

        assert result.exit_code == 0, result.output
        assert result.stdout == (
            "Deleted 3 rows from test_user_notes, 1 rows from tasks, 1 rows from task_revisions,"
            " 0 rows from idempotency_keys (user 'alice').\n"
        )
        with app.app_context():
            left = db.session.execute(sa.select(notes.c.user_id)).scalars().all()
        assert left == ["bob"]
    finally:
        with app.app_context():
            notes.drop(db.engine, checkfirst=True)
        db.metadata.remove(notes)


# doctor


def test_doctor_on_a_healthy_deployment(app, backend):
    result = invoke(app, "doctor")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines] == [
        "environment",
        "token",
        "jwks",
        "cors",
        "database",
        "schema",
        "indexes",
        "row",
    ]
    assert lines[0].startswith("warn  environment        ENVIRONMENT=test")
    assert lines[1] == "ok    token key          JWT_SECRET of 42 bytes"
    assert lines[4].startswith(f"ok    database           {backend} ")
    assert lines[5] == "ok    schema             at the latest migration (0006)"
    assert lines[6] == "ok    indexes            all 5 expected indexes present"
    if backend == "postgresql":
        assert lines[7] == (
            "ok    row security       enabled and forced on idempotency_keys, task_revisions, tasks"
        )
    else:
        assert lines[7] == "ok    row security       not available on sqlite"


@pytest.mark.parametrize(
    "overrides, index, failing",
    [
        (
            {"JWT_SECRET": "short-secret"},
            1,
            "FAIL  token key          JWT_SECRET is 12 bytes; use at least 32",
        ),
        (
            {"JWT_SECRET": "a" * 40},
            1,
            "FAIL  token key          JWT_SECRET is long but repetitive; use a random one",
        ),
        (
            {"JWT_JWKS_URL": "http://127.0.0.1:{port}/jwks"},
            2,
            "FAIL  jwks               http://127.0.0.1:{port}/jwks unreachable: NewConnectionError",
        ),
    ],
)
def test_doctor_fails_on_bad_configuration(make_app, overrides, index, failing):
    port = free_port()
    app = make_app(**{key: value.format(port=port) for key, value in overrides.items()})

    result = invoke(app, "doctor")

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[index] == failing.format(port=port), result.stdout
    assert [line for line in lines if line.startswith("FAIL")] == [lines[index]]
    assert result.stderr == "Error: 1 check(s) failed\n"


def test_doctor_finds_a_missing_index_and_an_old_schema(backend, tmp_path):
    with fresh_database(backend, tmp_path) as url:
        app = create_app(base_config(url))
        with app.app_context():
            db.session.execute(sa.text("DROP INDEX ix_tasks_user_title"))
            db.session.execute(sa.text("DELETE FROM alembic_version"))
            db.session.commit()

        result = invoke(app, "doctor")

        with app.app_context():
            db.engine.dispose()
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[5] == (
        "FAIL  schema             schema at no migration, expected ['0006']: run flask db upgrade"
    )
    assert lines[6] == "FAIL  indexes            missing ix_tasks_user_title"
    assert result.stderr == "Error: 2 check(s) failed\n"


def test_doctor_fails_when_row_level_security_is_off(tmp_path):
    with fresh_database("postgresql", tmp_path) as url:
        app = create_app(base_config(url))
        with app.app_context():
            db.session.execute(sa.text("ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY"))
            db.session.commit()
        result = invoke(app, "doctor")
        with app.app_context():
            db.engine.dispose()

    assert result.exit_code == 1
    assert result.stdout.splitlines()[7] == (
        "FAIL  row security       not enabled and forced on tasks: run flask db upgrade"
    )


def test_doctor_fails_when_the_role_inherits_the_operator_policy(tmp_path):
    with fresh_database("postgresql", tmp_path) as url:
        app = create_app(base_config(url))
        with app.app_context():
            db.session.execute(sa.text("ALTER ROLE current_user INHERIT"))
            db.session.commit()
        result = invoke(app, "doctor")
        with app.app_context():
            db.engine.dispose()

    assert result.exit_code == 1
    assert result.stdout.splitlines()[7] == (
        f"FAIL  row security       role '{sa.make_url(url).username}' inherits the operator"
        " role, whose policy admits every row: grant it WITH INHERIT FALSE (see migration 0003)"
    )


def test_doctor_warns_of_a_superuser_rather_than_blaming_its_grants(tmp_path):
    # pg_has_role is true for a superuser whatever its grants: the check of the
    # operator role's inheritance said FAIL, with advice that cannot help.
    # (TEST_DATABASE_URL connects as a superuser, as the suite's own set-up needs.)
    with fresh_database("postgresql", tmp_path) as url:
        as_superuser = postgres_admin_url().set(database=sa.make_url(url).database)
        app = create_app(base_config(as_superuser.render_as_string(hide_password=False)))
        result = invoke(app, "doctor")
        with app.app_context():
            db.engine.dispose()

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[7] == (
        f"warn  row security       role '{as_superuser.username}' is a superuser or BYPASSRLS"
        " and ignores it: connect as the tables' non-superuser owner"
    )


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("postgresql://todo@127.0.0.1/todo", False),
        ("postgresql://todo@/todo?host=/var/run/postgresql", False),
        ("postgresql://todo@db.example.com/todo?sslmode=require", False),
        ("postgresql://todo@db.example.com/todo", True),
        ("postgresql://todo@/todo?host=db.example.com", True),
        ("postgresql://todo@/todo?host=localhost&host=db.example.com", True),
        ("postgresql://todo@/todo?host=localhost,db.example.com", True),
        ("postgresql://todo@/todo?host=db.example.com&sslmode=verify-full", False),
        ("postgresql://todo@/todo?host=localhost:5432&host=127.0.0.1:5433", False),
        ("postgresql://todo@/todo?hostaddr=10.0.0.5", True),
        ("postgresql://todo@localhost/todo?hostaddr=10.0.0.5", True),
        ("postgresql://todo@[::1]/todo", False),
    ],
)
def test_doctor_finds_a_remote_database_without_tls_wherever_its_host_is_given(url, warned):
    config = {
        "ENVIRONMENT": "production",
        "LOG_FORMAT": "json",
        "CORS_ORIGINS": [],
        "SQLALCHEMY_DATABASE_URI": sa.make_url(url),
    }

    check = doctor.check_environment(config)

    assert (check.status, check.detail) == (
        ("warn", "production, but remote database without sslmode=require")
        if warned
        else ("ok", "production")
    )


# The database is down, or has no schema


UNREACHABLE_COMMANDS = [
    ["seed", "--users", "1", "--tasks-per-user", "1"],
    ["stats"],
    ["export", "--user-id", "alice"],
    ["import", "{file}", "--user-id", "alice"],
    ["purge-user", "--user-id", "alice", "--yes"],
    ["bench", "--users", "1", "--requests", "1"],
]


@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
@pytest.mark.parametrize("arguments", UNREACHABLE_COMMANDS, ids=lambda a: a[0])
def test_an_unreachable_database_is_a_one_line_error(tmp_path, where, arguments):
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text(json.dumps(GOOD) + "\n")
    app = create_app(base_config(unreachable_url(where, tmp_path)))

    result = invoke(app, *(a.format(file=tasks_file) for a in arguments))

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: database unreachable: ")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
def test_doctor_with_an_unreachable_database(tmp_path, where):
    app = create_app(base_config(unreachable_url(where, tmp_path)))

    result = invoke(app, "doctor")

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[4].startswith("FAIL  database           database unreachable: ")
    assert lines[5:] == [
        "FAIL  schema             skipped: the database does not answer",
        "FAIL  indexes            skipped: the database does not answer",
        "FAIL  row security       skipped: the database does not answer",
    ]
    assert result.stderr == "Error: 4 check(s) failed\n"


def test_a_database_without_schema_says_to_upgrade(backend, tmp_path):
    with fresh_database(backend, tmp_path, migrate=False) as url:
        app = create_app(base_config(url))

        result = invoke(app, "stats")

        with app.app_context(), rls.bypass():
            db.engine.dispose()
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the database has no schema (")
    assert result.stderr.endswith("): run `flask db upgrade`\n")


WRITERS = [
    ["seed", "--user-id", "alice", "--tasks-per-user", "1"],
    ["import", "{file}", "--user-id", "alice"],
    ["purge-user", "--user-id", "alice", "--yes"],
]


@pytest.mark.parametrize("arguments", WRITERS, ids=lambda a: a[0])
def test_commands_that_write_refuse_a_schema_behind_the_code(backend, tmp_path, arguments):
    """At 0001 SQLite took the rows and PostgreSQL failed on a missing function."""
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text(json.dumps(GOOD) + "\n")
    with fresh_database(backend, tmp_path, migrate=False) as url:
        app = create_app(base_config(url))
        with app.app_context():
            flask_migrate.upgrade(revision="0001")

        result = invoke(app, *(a.format(file=tasks_file) for a in arguments))

        left = count_tasks(app)
        with app.app_context():
            db.engine.dispose()
    assert result.exit_code == 1
    assert result.stderr == "Error: schema at ['0001'], expected ['0006']: run flask db upgrade\n"
    assert left == 0


@pytest.mark.parametrize(
    "overrides, line",
    [
        ({}, "ok    environment        production"),
        (
            {"LOG_FORMAT": "text", "CORS_ORIGINS": ["http://app.example", "http://localhost:3000"]},
            "warn  environment        production, but LOG_FORMAT is not json;"
            " plain-http CORS origins http://app.example",
        ),
    ],
)
def test_doctor_checks_production_settings(database_urls, overrides, line):
    app = create_app(
        {**base_config(database_urls("postgresql")), "ENVIRONMENT": "production", **overrides}
    )

    result = invoke(app, "doctor")

    with app.app_context(), rls.bypass():
        db.engine.dispose()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == line


@pytest.fixture
def jwks_server():
    """A JWKS endpoint on 127.0.0.1 serving whatever `jwks_server.body` holds."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = server.body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


GOOD_KEY = idp.generate("EdDSA").jwk
NO_USABLE_KEY = (
    "{url}: no usable key of %d (each needs a kid, a key pyjwt can read, and to verify"
    " an algorithm of JWT_ALGORITHMS)"
)


@pytest.mark.parametrize(
    "keys, status, detail",
    [
        ([GOOD_KEY], "ok  ", "{url}: 1 usable key(s) of 1"),
        # the API skips a key without a kid (no token names it) and a broken one
        (
            [GOOD_KEY, {**GOOD_KEY, "kid": None}, {**GOOD_KEY, "x": "abc"}, 1],
            "ok  ",
            "{url}: 1 usable key(s) of 4",
        ),
        ([], "FAIL", NO_USABLE_KEY % 0),
        ([{"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "k"}], "FAIL", NO_USABLE_KEY % 1),
        ([1, 2], "FAIL", NO_USABLE_KEY % 2),
        # read, but never picked to verify: for encryption, or of an algorithm not allowed
        ([{**GOOD_KEY, "use": "enc"}], "FAIL", NO_USABLE_KEY % 1),
        ([{**GOOD_KEY, "alg": "RS256"}], "FAIL", NO_USABLE_KEY % 1),
        ("abc", "FAIL", "{url} did not answer a JWK set"),
        (5, "FAIL", "{url} did not answer a JWK set"),
        (None, "FAIL", "{url} did not answer a JWK set"),
    ],
)
def test_doctor_fetches_the_jwks(make_app, jwks_server, keys, status, detail):
    jwks_server.body = json.dumps({"keys": keys}) if keys is not None else "<html>"
    app = make_app(JWT_JWKS_URL=jwks_server.url)

    result = invoke(app, "doctor")

    assert f"{status}  jwks               {detail.format(url=jwks_server.url)}" in (
        result.stdout.splitlines()
    )
    assert result.exit_code == (0 if status.strip() == "ok" else 1)


# What a shell passes for a user id in Latin-1 ("caf\xe9"), and a NUL from a script.
NOT_TEXT = "Invalid value for '--user-id': must be UTF-8 text without NUL characters"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["stats", "--top", "-1"], "Invalid value for '--top'"),
        (["stats", "--format", "xml"], "No such option '--format'"),
        (["export"], "Missing option '--user-id'"),
        (["export", "--user-id", "x" * 256], "must be 1 to 255 characters"),
        (["export", "--user-id", "alice", "-o", ""], "'--output' / '-o': must not be empty"),
        (["import", "--user-id", "alice"], "Missing argument 'FILE'"),
        (["purge-user"], "Missing option '--user-id'"),
        (["purge-user", "--user-id", ""], "must be 1 to 255 characters"),
        (["purge-user", "--user-id", "a\x00b"], NOT_TEXT),
        (["export", "--user-id", "caf\udce9"], NOT_TEXT),
        (["import", "-", "--user-id", "caf\udce9"], NOT_TEXT),
        (["doctor", "--fix"], "No such option '--fix'"),
    ],
)
def test_bad_options_are_usage_errors(app, arguments, message):
    result = invoke(app, *arguments)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_round_trip_keeps_line_breaks_and_unicode_inside_fields(app, alice, tmp_path):
    body = {"title": "tab\there \u2028 nel\x85 é", "description": "one\ntwo\r\nthree \U0001f600"}
    assert alice.post("/api/alice/tasks", json=body).status_code == 201
    before = api_tasks(alice, "alice")
    path = tmp_path / "alice.jsonl"

    invoke(app, "export", "--user-id", "alice", "--output", path)
    invoke(app, "purge-user", "--user-id", "alice", "--yes")
    result = invoke(app, "import", path, "--user-id", "alice")

    assert result.exit_code == 0, result.output
    assert path.read_bytes().count(b"\n") == 1
    assert api_tasks(alice, "alice") == before


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has no statement timeout
def test_a_statement_timeout_is_not_called_an_unreachable_database(backend, tmp_path):
    # statement_timeout's cancel is an OperationalError, as a lost connection is.
    with fresh_database(backend, tmp_path) as url:
        app = create_app({**base_config(url), "DB_STATEMENT_TIMEOUT_MS": 1})
        with app.app_context(), rls.bypass():
            with pytest.raises(sa.exc.OperationalError) as raised:
                db.session.execute(sa.text("SELECT pg_sleep(0.1)"))
            db.session.rollback()
            db.engine.dispose()

    assert admin.database_error(raised.value) == (
        "a statement ran past DB_STATEMENT_TIMEOUT_MS and was cancelled"
        " (canceling statement due to statement timeout)"
    )
