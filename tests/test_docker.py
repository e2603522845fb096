"""The Dockerfile, checked without a Docker engine: its inputs exist, its command serves"""

import fnmatch
import json
import shlex
import shutil
import subprocess

import pytest
from conftest import TEST_SECRET
from runtime_servers import ROOT, get, serve, server_env

DOCKERFILE = ROOT / "Dockerfile"


def instructions():
    """[(stage index, INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(current.strip())
            current = ""
    stage, result = -1, []
    for line in joined:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stage += 1
        result.append((stage, instruction, args.strip()))
    return result


def final_stage():
    parsed = instructions()
    last = max(stage for stage, _, _ in parsed)
    return [(instruction, args) for stage, instruction, args in parsed if stage == last]


def copies():
    """(sources, destination) of every COPY from the build context."""
    result = []
    for _, instruction, args in instructions():
        if instruction == "COPY" and "--from=" not in args:
            *sources, destination = shlex.split(args)
            result.append((sources, destination))
    return result


def image_env():
    env = {}
    for instruction, args in final_stage():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def exec_form(instruction_name):
    (args,) = [args for instruction, args in final_stage() if instruction == instruction_name]
    return json.loads(args)


def dockerignored(path):
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!")):
            ignored = not negate
    return ignored


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = [source for sources, _ in copies() for source in sources]

    assert {"todo", "migrations", "wsgi.py", "gunicorn.conf.py", "setup.cfg"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the project"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"


def test_secrets_and_local_state_stay_out_of_the_build_context():
    for path in (".env", ".env.production", ".venv", ".git", "instance"):
        assert dockerignored(path), path
    assert not dockerignored(".env.example")


def test_final_stage_is_slim_non_root_with_a_healthcheck_and_gunicorn():
    stages = [args for _, instruction, args in instructions() if instruction == "FROM"]
    final = final_stage()
    run_lines = " ".join(args for instruction, args in final if instruction == "RUN")
    (user,) = [args for instruction, args in final if instruction == "USER"]
    (workdir,) = [args for instruction, args in final if instruction == "WORKDIR"]
    default_image = next(a for _, i, a in instructions() if i == "ARG").split("=", 1)[1]

    assert len(stages) == 2 and "slim" in default_image
    assert "apt-get" not in run_lines and "build-essential" not in run_lines
    assert user not in ("root", "0")
    assert workdir == "/app"  # where `flask db upgrade` finds wsgi.py and migrations/
    assert exec_form("CMD") == ["gunicorn", "wsgi:app"]
    assert healthcheck_command()[:2] == ["python", "-c"]  # no curl in a slim image
    assert "/healthz" in healthcheck_command()[2]
    assert image_env()["ENVIRONMENT"] == "production"
    assert image_env()["HOST"] == "0.0.0.0"
    assert image_env()["PORT"] == "8000"


def healthcheck_command():
    (args,) = [args for instruction, args in final_stage() if instruction == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD ") + 4 :])


@pytest.mark.parametrize("backend", ["postgresql"])  # production refuses SQLite
def test_the_image_command_serves_from_the_copied_files(database_url, tmp_path):
    """The final stage's files, environment and CMD, run with this venv's packages."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for sources, _ in copies()[-3:]:  # the final stage's three COPY lines
        for source in sources:
            copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy
            copy(ROOT / source, app_dir / source)
    # Only loopback and a free port here; the image listens on 0.0.0.0:8000.
    env = {k: v for k, v in image_env().items() if k not in ("PATH", "HOST", "PORT")}
    env.update(HOST="127.0.0.1", DATABASE_URL=database_url, JWT_SECRET=TEST_SECRET)
    env = server_env(env)

    upgrade = subprocess.run(
        ["flask", "db", "upgrade"],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    command = [shutil.which(exec_form("CMD")[0], path=env["PATH"]), *exec_form("CMD")[1:]]
    with serve(command, env, tmp_path / "gunicorn.log", cwd=app_dir) as (url, _):
        status, headers, _ = get(f"{url}/healthz")
        healthcheck = subprocess.run(healthcheck_command(), env=env, cwd=app_dir, check=False)
        ready = get(f"{url}/readyz")[0]

    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000"  # production
    assert healthcheck.returncode == 0
    assert ready == 200
    entries = [json.loads(line) for line in (tmp_path / "gunicorn.log").read_text().splitlines()]
    access = {entry["route"] for entry in entries if entry["logger"] == "todo.access"}
    assert access == {"/healthz", "/readyz"}
