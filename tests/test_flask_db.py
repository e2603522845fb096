"""`flask db ...` and `flask tasks ...` from the repository root, as an operator runs them"""

import subprocess
import sys

import pytest
from ops_support import ROOT, command_environment, fresh_database, unreachable_url


def flask(database_url, *arguments):
    return subprocess.run(
        [sys.executable, "-m", "flask", *arguments],
        cwd=ROOT,
        env=command_environment(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def upgrades(finished):
    """The "from -> to" of each migration that alembic's log says it ran."""
    return [
        line.split("Running upgrade ", 1)[1].split(",", 1)[0]
        for line in finished.stderr.splitlines()
        if "Running upgrade " in line
    ]


def test_db_upgrade_twice_is_harmless_and_leaves_the_schema_current(backend, tmp_path):
    with fresh_database(backend, tmp_path, migrate=False) as url:
        first = flask(url, "db", "upgrade")
        second = flask(url, "db", "upgrade")
        current = flask(url, "db", "current")
        check = flask(url, "db", "check")
        doctor = flask(url, "tasks", "doctor")

    assert first.returncode == 0, first.stderr
    assert upgrades(first) == [
        " -> 0001",
        "0001 -> 0002",
        "0002 -> 0003",
        "0003 -> 0004",
        "0004 -> 0005",
        "0005 -> 0006",
    ]
    assert second.returncode == 0, second.stderr
    assert upgrades(second) == []
    assert current.returncode == 0 and current.stdout == "0006 (head)\n"
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected." in check.stdout + check.stderr
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "ok    schema             at the latest migration (0006)" in doctor.stdout


@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
@pytest.mark.parametrize("command", ["upgrade", "current", "check", "downgrade"])
def test_flask_db_on_an_unreachable_database_is_one_line(tmp_path, where, command):
    finished = flask(unreachable_url(where, tmp_path), "db", command)

    assert finished.returncode == 1
    assert len(finished.stderr.splitlines()) == 1, finished.stderr
    assert finished.stderr.startswith("ERROR [flask_migrate] Error: database unreachable: ")
    assert "Traceback" not in finished.stdout + finished.stderr


def test_flask_tasks_lists_every_operator_command(tmp_path):
    listed = flask(f"sqlite:///{tmp_path / 'todo.sqlite3'}", "tasks", "--help")

    assert listed.returncode == 0, listed.stderr
    # the first word of each line under "Commands:" (the rest is its summary)
    commands = [line.split()[0] for line in listed.stdout.split("Commands:\n")[1].splitlines()]
    assert commands == [
        "bench",
        "doctor",
        "expire-idempotency-keys",
        "export",
        "import",
        "purge-user",
        "seed",
        "stats",
        "token",
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["tasks", "doctor"],
        ["tasks", "stats"],
        ["tasks", "token", "--user-id", "a"],
        ["db", "upgrade"],
    ],
    ids=" ".join,
)
def test_a_bad_configuration_is_one_line_for_every_command(command):
    environment = command_environment("unused", ENVIRONMENT="production")
    del environment["DATABASE_URL"]

    finished = subprocess.run(
        [sys.executable, "-m", "flask", *command],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 4
    assert finished.stderr == (
        "configuration error: DATABASE_URL is required when ENVIRONMENT=production\n"
    )


def test_output_that_cannot_be_written_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:  # takes the open, refuses every byte
        finished = subprocess.run(
            [sys.executable, "-m", "flask", "tasks", "token", "--user-id", "alice"],
            cwd=ROOT,
            env=command_environment(f"sqlite:///{tmp_path / 'unused.sqlite3'}"),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )

    assert finished.returncode == 1
    assert finished.stderr == "Error: cannot write the output: No space left on device\n"
