"""`flask tasks bench`: a real subprocess with its own gunicorn, and against --url"""

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa
from conftest import base_config
from ops_support import ROOT, command_environment, free_port, fresh_database

from cli import tasks
from todo import bench, create_app, rls
from todo.extensions import db
from todo.models import Task

TABLE_HEADER = ["operation", "requests", "req/s", "p50", "ms", "p95", "ms", "p99", "ms", "max"]


def invoke(app, *arguments):
    return app.test_cli_runner().invoke(tasks, [str(a) for a in arguments])


def tasks_per_user(app):
    with app.app_context(), rls.bypass():
        rows = db.session.execute(
            sa.select(Task.user_id, sa.func.count()).group_by(Task.user_id)
        ).all()
    return dict(rows)


def test_bench_starts_its_own_server_seeds_users_and_reports(app, database_url):
    command = [
        sys.executable,
        "-m",
        "flask",
        "tasks",
        "bench",
        "--users",
        "2",
        "--seed-tasks",
        "20",
        "--requests",
        "50",
        "--concurrency",
        "2",
        "--scenario",
        "mixed",
        "--json",
    ]

    finished = subprocess.run(
        command,
        cwd=ROOT,
        env=command_environment(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ("Seeded 20 tasks for each of bench-user-0001, bench-user-0002.\n")
    summary = json.loads(finished.stdout)
    assert summary["url"].startswith("http://127.0.0.1:")
    assert (summary["scenario"], summary["users"], summary["concurrency"]) == ("mixed", 2, 2)
    assert summary["requests"] == 50
    assert summary["errors"] == 0 and summary["errors_by_status"] == {}
    assert summary["ok"] is True
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert set(summary["operations"]) <= {"list", "get", "create", "complete"}
    assert sum(op["requests"] for op in summary["operations"].values()) == 50
    created = summary["operations"].get("create", {}).get("requests", 0)
    counts = tasks_per_user(app)
    assert set(counts) == {"bench-user-0001", "bench-user-0002"}
    assert sum(counts.values()) == 40 + created


@pytest.fixture
def server(app):
    """A gunicorn on this test's database, started the way bench starts its own."""
    with bench.local_server(app.config, workers=1) as url:
        yield url


def test_bench_against_a_running_server(app, server):
    result = invoke(
        app,
        "bench",
        "--url",
        server,
        "--user-id",
        "alice",
        "--scenario",
        "create",
        "--requests",
        "12",
        "--concurrency",
        "3",
    )

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"create against {server}: 1 users, concurrency 3, 12 requests in ")
    assert lines[1].split() == [*TABLE_HEADER, "ms", "errors"]
    assert lines[2].split()[:2] == ["create", "12"] and lines[2].split()[-1] == "0"
    assert lines[3].split()[:2] == ["all", "12"]
    assert lines[4] == "errors by status: none"
    assert tasks_per_user(app) == {"alice": 12}


def test_bench_gates_on_p95_and_creates_a_task_to_get(app, server):
    result = invoke(
        app,
        "bench",
        "--url",
        server,
        "--user-id",
        "newcomer",
        "--scenario",
        "get",
        "--requests",
        "5",
        "--p95-ms",
        "0.001",
    )

    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == "errors by status: none"
    assert result.stderr.startswith("Error: p95 ")
    assert result.stderr.endswith(" ms is above --p95-ms 0.001\n")
    assert tasks_per_user(app) == {"newcomer": 1}


def test_bench_with_the_tokens_file_of_seed(app, server, tmp_path):
    tokens_file = tmp_path / "tokens.json"
    seeded = invoke(
        app, "seed", "--users", "3", "--tasks-per-user", "5", "--tokens-file", tokens_file
    )

    result = invoke(
        app, "bench", "--url", server, "--tokens-file", tokens_file, "--requests", "9", "--json"
    )

    assert seeded.exit_code == 0, seeded.output
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["users"], summary["requests"], summary["errors"]) == (3, 9, 0)


NOT_AN_OBJECT = "Error: {file} is not a JSON object of user id -> token\n"


@pytest.mark.parametrize(
    "content, message",
    [
        ("[]", NOT_AN_OBJECT),
        ('{"alice": 1}', NOT_AN_OBJECT),
        (
            "{",
            "Error: cannot read tokens from {file}: Expecting property name enclosed in"
            " double quotes: line 1 column 2 (char 1)\n",
        ),
        # Neither a user id the API accepts, nor a token a header can carry.
        ('{"\\ud800": "token"}', NOT_AN_OBJECT),
        ('{"alice": "token\\r\\nX-Injected: 1"}', NOT_AN_OBJECT),
    ],
)
def test_bench_refuses_a_bad_tokens_file(app, tmp_path, content, message):
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(content)

    result = invoke(app, "bench", "--tokens-file", tokens_file, "--requests", "5")

    assert result.exit_code == 1
    assert result.stderr == message.format(file=tokens_file)


def test_bench_says_when_the_server_refuses_its_tokens(make_app, server):
    other = make_app(JWT_SECRET="another-secret-of-more-than-32-bytes!")

    result = invoke(other, "bench", "--url", server, "--user-id", "alice", "--requests", "5")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: the server refused the bench token of 'alice' (401):"
        " does it share this JWT_SECRET?\n"
    )


def test_bench_reports_a_server_that_is_not_ready(backend, tmp_path):
    with fresh_database(backend, tmp_path, migrate=False) as url:
        app = create_app(base_config(url))

        result = invoke(app, "bench", "--user-id", "alice", "--requests", "5")

        with app.app_context(), rls.bypass():
            db.engine.dispose()
    assert result.exit_code == 1
    assert result.stderr == (
        "Starting gunicorn on 127.0.0.1...\n"
        "Error: the server is not ready: Not ready: schema at no migration,"
        " expected ['0006']: run flask db upgrade.\n"
    )


def invalid(option, reason):
    return f"Invalid value for '{option}': {reason}"


NOT_A_URL = "--url {!r} is not an http(s)://host[:port] URL"


@pytest.mark.parametrize(
    "arguments, code, message",
    [
        (["--duration", "1", "--requests", "5"], 2, "give --duration or --requests, not both"),
        (["--concurrency", "0"], 2, invalid("--concurrency", "0 is not in the range 1<=x<=256.")),
        (["--duration", "601"], 2, invalid("--duration", "601.0 is not in the range 0.1<=x<=600.")),
        (
            ["--scenario", "delete"],
            2,
            invalid("--scenario", "'delete' is not one of 'list', 'get', 'create', 'mixed'."),
        ),
        (
            ["--user-id", "caf\udce9"],
            2,
            invalid("--user-id", "must be UTF-8 text without NUL characters"),
        ),
        (["--p95-ms", "0"], 2, invalid("--p95-ms", "0.0 is not in the range x>0.")),
        (["--p95-ms", "nan"], 2, invalid("--p95-ms", "'nan' is not a finite number.")),
        (["--duration", "NaN"], 2, invalid("--duration", "'NaN' is not a finite number.")),
        (["--timeout", "nan"], 2, invalid("--timeout", "'nan' is not a finite number.")),
        (["--p95-ms", "inf"], 2, invalid("--p95-ms", "'inf' is not a finite number.")),
        (["--url", "ftp://127.0.0.1/"], 2, NOT_A_URL.format("ftp://127.0.0.1/")),
        (["--url", "http://[::1"], 2, NOT_A_URL.format("http://[::1")),
        (["--url", "http://127.0.0.1:99999"], 2, NOT_A_URL.format("http://127.0.0.1:99999")),
        (
            ["--url", "http://example.com"],
            2,
            "--url 'http://example.com' is not on 127.0.0.1: add --allow-remote to load"
            " another host",
        ),
        (
            ["--url", "http://127.0.0.1:{port}"],
            1,
            "Error: http://127.0.0.1:{port} unreachable: NewConnectionError",
        ),
        (["--tokens-file", "{this}"], 2, "give --tokens-file or --user-id, not both"),
        (
            ["--tokens-file", "/nonexistent/tokens.json"],
            2,
            invalid("--tokens-file", "File '/nonexistent/tokens.json' does not exist."),
        ),
    ],
)
def test_bench_bad_options_are_one_line_errors(app, arguments, code, message):
    port = free_port()
    arguments = [a.format(port=port, this=__file__) for a in arguments]

    result = invoke(app, "bench", "--user-id", "alice", "--requests", "5", *arguments)

    assert result.exit_code == code
    if code == 2:  # a usage error: click's usage lines, then the error
        usage = "Usage: tasks bench [OPTIONS]\nTry 'tasks bench --help' for help.\n\n"
        assert result.stderr == f"{usage}Error: {message}\n"
    else:
        assert result.stderr == message.format(port=port) + "\n"
    assert result.stdout == ""


def test_bench_seeds_no_more_than_seed_would_in_one_run(app):
    result = invoke(app, "bench", "--users", "10000", "--seed-tasks", "100000", "--requests", "5")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 10,000 users to seed x 100,000 tasks is more than 50,000,000 in one run\n"
    )
    with app.app_context(), rls.bypass():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 0


def test_bench_needs_a_secret_to_mint_tokens(make_app):
    app = make_app(JWT_SECRET=None, JWT_JWKS_URL="https://idp.example/jwks", SECRET_KEY="k" * 32)

    result = invoke(app, "bench", "--user-id", "alice", "--requests", "5")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cannot mint bench tokens:"
        " no JWT_SECRET: only the identity provider can issue tokens\n"
    )


def test_bench_that_cannot_mint_tokens_seeds_nothing(make_app):
    # Without --user-id it would seed bench users: the refusal comes first.
    app = make_app(JWT_SECRET=None, JWT_JWKS_URL="https://idp.example/jwks", SECRET_KEY="k" * 32)

    result = invoke(app, "bench", "--users", "3", "--seed-tasks", "2", "--requests", "5")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cannot mint bench tokens:"
        " no JWT_SECRET: only the identity provider can issue tokens\n"
    )
    assert tasks_per_user(app) == {}


def test_bench_against_an_unreachable_url_seeds_nothing(app):
    url = f"http://127.0.0.1:{free_port()}"

    result = invoke(
        app, "bench", "--url", url, "--users", "3", "--seed-tasks", "2", "--requests", "5"
    )

    assert result.exit_code == 1
    assert result.stderr == f"Error: {url} unreachable: NewConnectionError\n"
    assert tasks_per_user(app) == {}
