"""`flask db ...` and `flask tasks ...` from the repository root, as an operator runs them"""

import subprocess
import sys

from ops_support import ROOT, command_environment, fresh_database


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


def test_db_upgrade_twice_is_harmless_and_leaves_the_schema_current(backend, tmp_path):
    with fresh_database(backend, tmp_path, migrate=False) as url:
        first = flask(url, "db", "upgrade")
        second = flask(url, "db", "upgrade")
        current = flask(url, "db", "current")
        check = flask(url, "db", "check")
        doctor = flask(url, "tasks", "doctor")

    assert first.returncode == 0, first.stderr
    assert "Running upgrade 0002 -> 0003" in first.stderr
    assert second.returncode == 0, second.stderr
    assert "Running upgrade" not in second.stderr
    assert current.returncode == 0 and "0005 (head)" in current.stdout
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected." in check.stdout + check.stderr
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "ok    schema             at the latest migration (0005)" in doctor.stdout


def test_flask_tasks_lists_every_operator_command(tmp_path):
    listed = flask(f"sqlite:///{tmp_path / 'todo.sqlite3'}", "tasks", "--help")

    assert listed.returncode == 0, listed.stderr
    commands = listed.stdout.split("Commands:")[1].split()
    for command in ("bench", "doctor", "export", "import", "purge-user", "seed", "stats", "token"):
        assert command in commands


def test_a_bad_configuration_is_one_line_for_every_command():
    environment = command_environment("unused", ENVIRONMENT="production")
    del environment["DATABASE_URL"]

    finished = subprocess.run(
        [sys.executable, "-m", "flask", "tasks", "doctor"],
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
