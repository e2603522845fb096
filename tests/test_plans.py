"""benchmarks/plans.py: EXPLAIN of every endpoint's SQL, run as the benchmark runs it"""

import subprocess
import sys

import pytest
from ops_support import ROOT, command_environment, fresh_database


def plans_for(tmp_path, tasks_per_user):
    """PLANS.md of a fresh PostgreSQL database seeded with 2 users x `tasks_per_user`,
    and the finished plans.py process."""
    with fresh_database("postgresql", tmp_path) as url:
        environment = command_environment(url)
        tokens, out = tmp_path / "tokens.json", tmp_path / "PLANS.md"
        seed = ["seed", "--users", "2", "--tasks-per-user", str(tasks_per_user)]
        subprocess.run(
            [sys.executable, "-m", "flask", "tasks", *seed, "--tokens-file", str(tokens)],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            check=True,
            timeout=120,
        )
        finished = subprocess.run(
            [sys.executable, "benchmarks/plans.py", "--tokens-file", tokens, "--out", out],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return (out.read_text() if out.exists() else ""), finished


@pytest.mark.parametrize("tasks_per_user", [10, 101])
def test_plans_explain_every_endpoint_and_say_which_requests_were_not_made(
    tmp_path, tasks_per_user
):
    plans, finished = plans_for(tmp_path, tasks_per_user)

    assert finished.returncode == 0, finished.stderr
    assert f"with {tasks_per_user} tasks" in plans
    assert "| GET one task | SELECT in task_by_id() |" in plans
    assert "Requests that failed" not in plans
    second_page = "List, second page (cursor)"
    if tasks_per_user <= 100:  # the first page is the last: no cursor to follow
        assert f"Requests not made:\n\n- {second_page}: the first page holds every task" in plans
        assert f"| {second_page} |" not in plans
    else:
        assert "Requests not made" not in plans
        assert f"| {second_page} | SELECT |" in plans
