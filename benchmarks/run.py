"""The reproducible benchmark of the task API (issue 7). See benchmarks/README.md.

    .venv/bin/python benchmarks/run.py            # full run, writes benchmarks/RESULTS.md
    .venv/bin/python benchmarks/run.py --quick    # smoke run, writes benchmarks/out/

On PostgreSQL (DATABASE_URL, else a fresh database it creates on 127.0.0.1:5432 and
drops afterwards): `flask db upgrade`, `flask tasks seed` (100 users x 1000 tasks,
tokens file), EXPLAIN of every endpoint's SQL (benchmarks/plans.py), then the
framework floor (benchmarks/floor.py) and the API, each under the production
gunicorn configuration on a free port, driven by wrk (benchmarks/bench.lua) at 10
and 100 connections per scenario.
"""

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psycopg
except ImportError:  # not the project's virtualenv
    raise SystemExit(
        "run the benchmark with the project's virtualenv: "
        ".venv/bin/python benchmarks/run.py (after pip install -e '.[dev]')"
    ) from None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
BIN = Path(sys.executable).parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# name, description; run in this order (delete last: it consumes the seeded tasks)
SCENARIOS = {
    "get": "GET one task",
    "list100": "GET list, default page (100)",
    "list1000": "GET list, limit=1000",
    "create": "POST create",
    "update": "PUT update",
    "complete": "PATCH complete/reopen",
    "mix": "mix 70 % get / 20 % list / 10 % writes",
    "delete": "DELETE (distinct ids)",
}
NEEDS_IDS = {"get", "update", "complete", "delete", "mix"}
# The floor's second route (floor.py): the GET's one database round trip and nothing
# else, driven by the `get` scenario; it bounds what the GET target can reach.
FLOOR_GET = "floor_get"
FLOOR_GET_LABEL = "floor + the GET's database round trip"
WARMED = {"list100", "list1000"}  # read-only: a warm-up changes nothing they measure
TARGETS = {"get": 0.50, "list100": 0.25}  # fraction of the floor's requests/s
P95_BUDGET_MS = 200
RSS_BUDGET_MB = 150
FLOOR_DRIFT_WARNING = 0.15
KEY_PACKAGES = [
    "flask",
    "werkzeug",
    "flask-smorest",
    "marshmallow",
    "webargs",
    "apispec",
    "sqlalchemy",
    "flask-sqlalchemy",
    "psycopg",
    "psycopg-binary",
    "alembic",
    "pyjwt",
    "gunicorn",
]


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def fail(message):
    raise SystemExit(f"benchmark failed: {message}")


# --------------------------------------------------------------------------- setup


def ensure_wrk():
    if shutil.which("wrk"):
        return
    log("wrk is missing: installing Debian's package")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], check=True)
    if not shutil.which("wrk"):
        fail("could not install wrk (apt-get install -y -q wrk)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psycopg_url(url):
    """A libpq URL (what psycopg.connect takes) from a SQLAlchemy-style one."""
    return re.sub(r"^(postgres|postgresql)(\+\w+)?://", "postgresql://", url)


def connect(db_url, autocommit=False):
    """A connection to the benchmark database that sees every user's rows, as the
    operator commands do: row-level security admits the role <database>_operator
    (migration 0003), when it exists (a superuser needs none)."""
    conn = psycopg.connect(psycopg_url(db_url), autocommit=autocommit)
    conn.execute(
        "SELECT set_config('role', current_database() || '_operator', false)"
        " FROM pg_roles WHERE rolname = current_database() || '_operator'"
        " AND pg_has_role(current_user, oid, 'MEMBER')"
    )
    return conn


@contextlib.contextmanager
def database(url, keep):
    """The benchmark database: DATABASE_URL as given, else a fresh one dropped at the end."""
    if url:
        yield url
        return
    name = f"todo_bench_{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}_{os.getpid()}"
    admin = os.environ.get("BENCH_ADMIN_URL", DEFAULT_ADMIN_URL)
    password = secrets.token_hex(16)
    with psycopg.connect(admin, autocommit=True) as conn:
        # As in production (README, "Row-level security"): the app connects as the
        # non-superuser owner, so row-level security applies to what is measured.
        conn.execute(
            f"CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE PASSWORD '{password}'"
        )
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
        # As docs/scaling.md recommends for SSD storage (PLANS.md prints the value).
        conn.execute(f'ALTER DATABASE "{name}" SET random_page_cost = 1.1')
    location, _, query = admin.partition("?")
    scheme, _, server = location.partition("://")
    host = server.rsplit("@", 1)[-1].rsplit("/", 1)[0]
    created = f"{scheme}://{name}:{password}@{host}/{name}" + (f"?{query}" if query else "")
    log(f"created database {name}, owned by the role {name}")
    try:
        yield created
    finally:
        if keep:
            log(f"kept database {name} (--keep-db): {created}")
        else:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'DROP ROLE IF EXISTS "{name}_operator"')
                conn.execute(f'DROP ROLE IF EXISTS "{name}"')
            log(f"dropped database {name}")


def run_flask(args, env, capture=False):
    command = [str(BIN / "flask"), *args]
    log("$ " + shlex.join(["flask", *args]))
    result = subprocess.run(
        command,
        check=False,
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
    )
    if capture and result.stdout:
        print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        fail(f"`flask {' '.join(args)}` exited with {result.returncode}")
    return result.stdout or ""


SEED_RATE = re.compile(r"([\d][\d,. ]*)\s*(?:tasks|rows)\s*/\s*s", re.IGNORECASE)


def seed(env, users, per_user, tokens_file):
    started = time.perf_counter()
    output = run_flask(
        [
            "tasks",
            "seed",
            "--users",
            str(users),
            "--tasks-per-user",
            str(per_user),
            "--random-seed",
            "1",
            "--tokens-file",
            str(tokens_file),
        ],
        env,
        capture=True,
    )
    wall = time.perf_counter() - started
    match = SEED_RATE.search(output)
    printed = None
    if match:
        with contextlib.suppress(ValueError):
            printed = float(match.group(1).replace(",", "").replace(" ", ""))
    lines = [line for line in output.strip().splitlines() if line.strip()]
    rate_lines = [line for line in lines if match and match.group(0) in line]
    return {
        "tasks": users * per_user,
        "printed_line": (rate_lines or lines or [""])[-1],  # the line with the rate
        "printed_rate": printed,
        "wall_s": wall,
        "wall_rate": users * per_user / wall,
    }


def export_data(db_url, tokens, path):
    """One line per user: id, token, task ids, completion flags (for bench.lua)."""
    with connect(db_url) as conn:
        rows = conn.execute(
            "SELECT user_id, id::text, is_completed FROM tasks ORDER BY user_id, created_at, id"
        ).fetchall()
    per_user = {user: ([], []) for user in tokens}
    for user, task_id, completed in rows:
        if user in per_user:
            per_user[user][0].append(task_id)
            per_user[user][1].append("1" if completed else "0")
    with open(path, "w") as f:
        for user, (ids, flags) in per_user.items():
            f.write(f"{user}\t{tokens[user]}\t{','.join(ids)}\t{''.join(flags)}\n")
    return sum(len(ids) for ids, _ in per_user.values())


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    command: list
    log_path: Path
    ready_path: str
    config: dict = field(default_factory=dict)

    def workers(self):
        """pids of the gunicorn workers (children of the master)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid:
                    children.append(int(stat.parent.name))
        return sorted(children)

    def worker_rss_mb(self):
        rss = {}
        for pid in self.workers():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss[pid] = int(line.split()[1]) / 1024
        return rss

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def gunicorn_command(app_module, extra, env, print_config=False):
    command = [str(BIN / "gunicorn")]
    if (ROOT / "gunicorn.conf.py").exists():
        command += ["-c", "gunicorn.conf.py"]
    else:
        # Until gunicorn.conf.py exists: the same settings as explicit flags.
        workers = env.get("WEB_CONCURRENCY") or str(2 * (os.cpu_count() or 1) + 1)
        command += ["--bind", "{HOST}:{PORT}", "--workers", workers]
    command += extra
    if print_config:
        command.append("--print-config")
    return command + [app_module]


def effective_config(app_module, extra, env):
    """gunicorn's settings as it resolves them (--print-config), for the report."""
    command = [part.format(**env) for part in gunicorn_command(app_module, extra, env, True)]
    result = subprocess.run(command, check=False, cwd=ROOT, env=env, text=True, capture_output=True)
    settings = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            settings[name.strip()] = value.strip()
    return {
        k: settings.get(k)
        for k in (
            "bind",
            "workers",
            "worker_class",
            "threads",
            "preload_app",
            "keepalive",
            "worker_connections",
            "loglevel",
            "accesslog",
            "timeout",
        )
    }


def start_server(name, app_module, extra, env, ready_path, run_dir):  # noqa: PLR0917
    port = free_port()
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
    command = [part.format(**env) for part in gunicorn_command(app_module, extra, env)]
    log_path = run_dir / f"{name}.log"
    log(f"starting {name}: {shlex.join(command)} (port {port})")
    log_file = open(log_path, "w")  # noqa: SIM115 (kept open for the server's life)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=log_file)
    server = Server(
        name, process, port, command, log_path, ready_path, effective_config(app_module, extra, env)
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"{name} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2) as r:
                if r.status == 200:
                    return server
        time.sleep(0.2)
    server.stop()
    fail(f"{name} did not answer on port {port} within 60 s; see {log_path}")


# --------------------------------------------------------------------------- wrk


def wrk(port, scenario, connections, seconds, threads, data_path, timeout_s):  # noqa: PLR0917
    threads = min(threads, connections)
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        f"{timeout_s}s",
        "-s",
        str(HERE / "bench.lua"),
        f"http://127.0.0.1:{port}",
        "--",
        scenario,
        str(data_path),
        str(threads),
        f"{scenario}{connections}.{int(time.time())}",  # tags the titles it writes
    ]
    result = subprocess.run(command, check=False, text=True, capture_output=True)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            stats = json.loads(line[len("BENCH_JSON ") :])
            break
    else:
        fail(f"wrk printed no result for {scenario}:\n{result.stdout}\n{result.stderr}")
    bad = {s: n for s, n in stats["statuses"].items() if not 200 <= int(s) < 400}
    stats["bad_statuses"] = bad
    # no completed request at all (everything slower than the run) is a failure too
    stats["errors"] = (
        sum(stats["socket_errors"].values())
        + sum(bad.values())
        + stats["out_of_ids"]
        + (stats["requests"] == 0)
    )
    stats["command"] = shlex.join(command)
    return stats


def settle(port, db_url=None, path="/healthz", limit_s=180):
    """Wait until the server has drained the requests wrk left behind.

    When wrk stops, the requests still queued in gunicorn's backlog are served
    anyway (a slow scenario at 100 connections can leave seconds of work), which
    would steal time from the next scenario and race with the id export. Quiet
    means: /healthz answers fast, twice, and the tasks table stopped changing.
    """
    deadline = time.monotonic() + limit_s
    previous, quiet = None, 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        with contextlib.suppress(urllib.error.URLError, OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=limit_s).close()
        fast = time.monotonic() - started < 0.25
        fingerprint = None
        if db_url:
            with connect(db_url) as conn:
                fingerprint = conn.execute(
                    "SELECT count(*), max(updated_at), sum(version) FROM tasks"
                ).fetchone()
        quiet = quiet + 1 if fast and fingerprint == previous else 0
        if quiet >= 2:
            return
        previous = fingerprint
        time.sleep(0.25)
    log(f"warning: the server was still busy {limit_s} s after wrk stopped")


@dataclass
class Row:
    scenario: str
    connections: int
    stats: dict
    ratio: float | None = None
    label: str = ""


def run_scenario(server, scenario, connections, args, data_path, db_url=None):  # noqa: PLR0917
    stats = wrk(
        server.port, scenario, connections, args.duration, args.threads, data_path, args.timeout
    )
    settle(server.port, db_url, server.ready_path)
    errors = stats["errors"]
    note = f" ERRORS {errors}: {stats['socket_errors']} {stats['bad_statuses']}" if errors else ""
    if stats["requests"] == 0:
        note += " (no request completed within the run)"
    if stats["out_of_ids"]:
        note += f" (delete ran out of task ids on {stats['out_of_ids']} thread(s))"
    log(
        f"{scenario:>9} c={connections:<3} {stats['rps']:8.1f} req/s  "
        f"p50 {stats['latency_ms']['p50']:7.1f}  p95 {stats['latency_ms']['p95']:7.1f}  "
        f"p99 {stats['latency_ms']['p99']:7.1f} ms  statuses {stats['statuses']}{note}"
    )
    return Row(scenario, connections, stats)


# --------------------------------------------------------------------------- report


def machine():
    info = {"cores": os.cpu_count(), "cpu": "unknown", "memory_gb": None}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        release = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        os_name = f"{release.get('PRETTY_NAME', '').strip(chr(34))}, Linux {platform.release()}"
    info["os"] = os_name
    return info


def versions(db_url):
    found = {"Python": platform.python_version()}
    with psycopg.connect(psycopg_url(db_url)) as conn:
        found["PostgreSQL"] = conn.execute("SHOW server_version").fetchone()[0]
    wrk_version = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
    found["wrk"] = (wrk_version.stdout + wrk_version.stderr).split()[1]
    for name in KEY_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    everything = sorted(
        f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
    )
    return found, everything


def fmt(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def results_table(rows):
    lines = [
        "| Scenario | Conns | Requests/s | % of floor | p50 ms | p95 ms | p99 ms | max ms "
        "| Errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s, lat = row.stats, row.stats["latency_ms"]
        label = (
            f"floor (constant JSON), {row.label}"
            if row.scenario == "floor"
            else FLOOR_GET_LABEL
            if row.scenario == FLOOR_GET
            else SCENARIOS[row.scenario]
        )
        ratio = (
            "100 %"
            if row.scenario == "floor"
            else ("-" if row.ratio is None else f"{row.ratio:.1%}".replace("%", " %"))
        )
        lines.append(
            f"| {label} | {row.connections} | {fmt(s['rps'])} | {ratio} | {fmt(lat['p50'])} | "
            f"{fmt(lat['p95'])} | {fmt(lat['p99'])} | {fmt(lat['max'])} | {s['errors']} |"
        )
    return lines


def floor_baseline(floor_rows):
    """The floor's mean requests/s per concurrency, and how far its runs differ (%)."""
    by_connections = {}
    for row in (r for r in floor_rows if r.scenario == "floor"):
        by_connections.setdefault(row.connections, []).append(row.stats["rps"])
    mean = {c: sum(v) / len(v) for c, v in by_connections.items()}
    drift = {c: (max(v) - min(v)) / mean[c] if mean[c] else 0.0 for c, v in by_connections.items()}
    for c, d in drift.items():
        if d > FLOOR_DRIFT_WARNING:
            log(
                f"warning: the floor's requests/s at {c} connections differ by {d:.0%} "
                "before and after the API: the machine was not quiet, ratios are unreliable"
            )
    return mean, drift


def check_targets(rows, rss):
    api = [r for r in rows if r.scenario in SCENARIOS]
    checks = []
    for scenario, fraction in TARGETS.items():
        for row in (r for r in api if r.scenario == scenario):
            checks.append(
                (
                    f"{SCENARIOS[scenario]} at {row.connections} connections "
                    f">= {fraction:.0%} of the floor's requests/s",
                    f"{row.ratio:.0%}" if row.ratio is not None else "-",
                    row.ratio is not None and row.ratio >= fraction,
                )
            )
    at_100 = [r for r in api if r.connections == 100]
    worst = max(at_100, key=lambda r: r.stats["latency_ms"]["p95"], default=None)
    if worst:
        checks.append(
            (
                f"every scenario's p95 at 100 connections < {P95_BUDGET_MS} ms",
                f"worst {worst.stats['latency_ms']['p95']:.1f} ms ({worst.scenario})",
                all(r.stats["latency_ms"]["p95"] < P95_BUDGET_MS for r in at_100),
            )
        )
    if rss:
        checks.append(
            (
                f"RSS per API worker after the run < {RSS_BUDGET_MB} MB",
                f"max {max(rss.values()):.1f} MB",
                max(rss.values()) < RSS_BUDGET_MB,
            )
        )
    errors = sum(r.stats["errors"] for r in rows)
    checks.append(
        (
            "zero errors (socket errors, statuses >= 400, delete out of ids)",
            str(errors),
            errors == 0,
        )
    )
    return checks


def get_ceiling(rows):
    """What the GET's floor says about the GET target, or None without it."""
    floor_get = {r.connections: r for r in rows if r.scenario == FLOOR_GET}
    api_get = {r.connections: r for r in rows if r.scenario == "get"}
    shared = [c for c in floor_get if c in api_get]
    if not shared:
        return None
    return (
        "Ceiling of the GET target on this machine: the floor's route that makes only the "
        "GET's database round trip (benchmarks/floor.py: no pool, token check, "
        "flask-smorest, hooks or envelope) reached "
        + " and ".join(f"{floor_get[c].ratio:.0%} of the floor at {c} connections" for c in shared)
        + "; the API's GET reached "
        + " and ".join(f"{api_get[c].stats['rps'] / floor_get[c].stats['rps']:.0%}" for c in shared)
        + " of that route."
    )


def write_results(path, context):
    c = context
    lines = []
    if c["trial"]:
        lines += [f"> **Trial run** ({c['trial']}): not the reference numbers.", ""]
    lines += [
        "# Benchmark results",
        "",
        f"Produced by `{c['command']}` on {c['finished']} "
        f"({c['duration']} s per scenario, wrk {c['threads']} thread(s), "
        f"{c['users']} users × {c['per_user']} tasks). Reproduce: see the README's "
        '"Performance" section.',
        "",
        *results_table(c["rows"]),
        "",
        "% of floor: requests/s as a fraction of the constant-JSON Flask route served by the "
        "same gunicorn configuration at the same number of connections, measured before and "
        "after the API; the ratios use the mean of both ("
        + "; ".join(
            f"{conns} connections: {rps:,.1f} req/s, runs {c['drift'][conns]:.0%} apart"
            for conns, rps in c["floor_rps"].items()
        )
        + "; more than 15 % apart means the machine was not quiet). Errors: wrk socket "
        "errors (connect, read, write, timeout), responses with a status outside 200-399, "
        "a delete thread out of ids, or no request completed in the run.",
        "",
        "Responses by status: "
        + "; ".join(
            f"{row.scenario}{' ' + row.label if row.label else ''} c={row.connections}: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(row.stats["statuses"].items()))
            for row in c["rows"]
        )
        + ".",
        "",
        "## Targets (issue 7)",
        "",
        "| Target | Measured | Result |",
        "|---|---|---|",
        *(
            f"| {name} | {value} | {'PASS' if ok else '**FAIL**'} |"
            for name, value, ok in c["checks"]
        ),
        "",
        *([c["ceiling"], ""] if c["ceiling"] else []),
        "## Memory per worker",
        "",
        "RSS of each gunicorn worker (from /proc/PID/status) after the last scenario:",
        "",
        "| Server | Worker RSS MB |",
        "|---|---|",
        f"| API | {', '.join(f'{v:.1f}' for v in c['rss'].values()) or '-'} |",
        f"| floor | {', '.join(f'{v:.1f}' for v in c['floor_rss'].values()) or '-'} |",
        "",
        "## Seed",
        "",
        f"`flask tasks seed --users {c['users']} --tasks-per-user {c['per_user']}` printed: "
        f"`{c['seed']['printed_line']}`",
        "",
        f"- rate it printed: {fmt(c['seed']['printed_rate'], 0)} tasks/s",
        f"- found in the database afterwards: {c['seed']['found']}",
        f"- wall time of the command (process start included): {c['seed']['wall_s']:.2f} s, "
        f"{c['seed']['wall_rate']:,.0f} tasks/s",
        "",
        "## Server",
        "",
        f"- API: `{shlex.join(c['api_command'])}`",
        f"- floor: `{shlex.join(c['floor_command'])}`",
        f"- environment: `{c['server_env']}`",
        f"- gunicorn settings as resolved: {c['gunicorn_settings']}",
        "- LOG_LEVEL=WARNING drops the per-request access log line (INFO), so the numbers "
        "measure the API rather than log output.",
        f"- Each server is warmed up once ({c['warmup']} s), then serves every scenario in "
        f"turn; the list scenarios get {c['warmup']} s of the same load first, unmeasured, "
        "so that every worker holds every user's page (a first read is a miss in each "
        "worker; the mix measures lists read again after writes); between two measurements "
        "the harness waits until the server has drained the requests wrk left queued. "
        "Creates add tasks; delete runs last and removes distinct tasks (ids handed out "
        "per wrk thread).",
        "",
        "## Machine",
        "",
        f"- CPU: {c['machine']['cpu']}, {c['machine']['cores']} cores",
        f"- memory: {c['machine']['memory_gb']} GB",
        f"- OS: {c['machine']['os']}",
        "- load generator: wrk on the same machine (it shares the cores with the server "
        "and PostgreSQL)",
        "",
        "## Versions",
        "",
        "| Component | Version |",
        "|---|---|",
        *(f"| {name} | {version} |" for name, version in c["versions"].items()),
        "",
        "<details><summary>Every installed Python package</summary>",
        "",
        "```",
        *c["all_packages"],
        "```",
        "",
        "</details>",
        "",
        "## Query plans",
        "",
        f"See [{c['plans_name']}]({c['plans_name']}).",
        "",
        "## wrk command lines",
        "",
        "```",
        *(row.stats["command"] for row in c["rows"]),
        "```",
        "",
    ]
    # paths relative to the repository, as a reader would type them
    Path(path).write_text("\n".join(lines).replace(str(ROOT) + "/", ""))


README_BEGIN = "<!-- benchmark-results:begin (written by benchmarks/run.py) -->"
README_END = "<!-- benchmark-results:end -->"


def update_readme(context):
    """Put the table of this reference run into the README's "Performance" section."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        log("README.md has no benchmark-results markers: not updated")
        return
    m = context["machine"]
    block = [
        README_BEGIN,
        f"Reference run of {context['finished']} on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gb']} GB; {context['duration']} s per scenario; "
        f"{context['users']} users × {context['per_user']} tasks "
        f"([benchmarks/RESULTS.md](benchmarks/RESULTS.md) has the machine, versions, "
        "memory and seed rate):",
        "",
        *results_table(context["rows"]),
        "",
        "| Target (issue 7) | Measured | Result |",
        "|---|---|---|",
        *(
            f"| {name} | {value} | {'PASS' if ok else '**FAIL**'} |"
            for name, value, ok in context["checks"]
        ),
        *(["", context["ceiling"]] if context["ceiling"] else []),
        README_END,
    ]
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(head + "\n".join(block) + tail)
    log("updated the table of README.md's Performance section")


# --------------------------------------------------------------------------- main


def parse_args():
    parser = argparse.ArgumentParser(
        description="Seed PostgreSQL, serve the API and the framework floor with gunicorn, "
        "drive them with wrk, and write RESULTS.md and PLANS.md."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 s per scenario, results under benchmarks/out/",
    )
    parser.add_argument("--duration", type=int, help="seconds per scenario (default 10)")
    parser.add_argument(
        "--connections", default="10,100", help="comma-separated connection counts (default 10,100)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of: " + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (default 1: on a small machine every core wrk "
        "takes is taken from the server)",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=10,
        help="wrk request timeout in seconds (slower answers count as errors)",
    )
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--tasks-per-user", type=int, default=1000)
    parser.add_argument(
        "--warmup", type=int, help="seconds of warm-up per server and list scenario (default 5)"
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the database this run created (for inspection)"
    )
    parser.add_argument("--no-plans", action="store_true", help="skip the EXPLAIN step")
    parser.add_argument(
        "--out",
        help="where to write RESULTS.md and PLANS.md (default: "
        "benchmarks/ for a full run, benchmarks/out/ otherwise)",
    )
    parser.add_argument(
        "--profile",
        metavar="SCENARIO",
        help="instead of the benchmark: serve the API with one worker under "
        "pyinstrument, drive SCENARIO, save the report under benchmarks/out/",
    )
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if args.profile:
        unknown |= {args.profile} - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.scenarios = [s for s in SCENARIOS if s in args.scenarios]  # delete stays last
    if args.duration is None:
        args.duration = 2 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 5
    reference = (
        not args.quick
        and args.duration >= 10
        and not args.profile
        and args.connections == [10, 100]
        and args.scenarios == list(SCENARIOS)
        and args.users == 100
        and args.tasks_per_user == 1000
    )
    args.trial = None if reference else shlex.join(sys.argv[1:])
    args.out = Path(args.out) if args.out else (HERE if reference else OUT)
    return args


def environments(db_url):
    base = {
        **os.environ,
        "DATABASE_URL": db_url,
        "JWT_SECRET": os.environ.get("JWT_SECRET") or secrets.token_hex(32),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    base.pop("FLASK_APP", None)
    # The seed mints development tokens, which production refuses to do; they are
    # signed with the same JWT_SECRET that the production server verifies. Its bulk
    # statements get a minute rather than the API's per-statement budget (5 s by
    # default), which a busy shared machine can exceed.
    seed_env = {**base, "ENVIRONMENT": "development"}
    seed_env.setdefault("DB_STATEMENT_TIMEOUT_MS", "60000")
    return {**base, "ENVIRONMENT": "production"}, seed_env


def prepare(args, db_url, prod_env, seed_env, run_dir):
    """Schema, seed and statistics; the seed's figures and the users' tokens."""
    run_flask(["db", "upgrade"], prod_env)
    with connect(db_url) as conn:
        if conn.execute("SELECT count(*) FROM tasks").fetchone()[0]:
            fail(
                "the database already has tasks: give an empty database "
                "(or unset DATABASE_URL to let the benchmark create one)"
            )
    tokens_file = run_dir / "tokens.json"
    seed_info = seed(seed_env, args.users, args.tasks_per_user, tokens_file)
    if not tokens_file.exists():
        fail(f"the seed wrote no tokens file ({tokens_file})")
    tokens = json.loads(tokens_file.read_text())
    if not tokens:
        fail(f"the seed wrote no tokens to {tokens_file}")
    # What autovacuum would do soon after a bulk load; makes the plans reproducible.
    with psycopg.connect(psycopg_url(db_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE tasks")  # as the owner
    with connect(db_url) as conn:
        users, total, least, most = conn.execute(
            "SELECT count(*), coalesce(sum(n), 0), min(n), max(n)"
            " FROM (SELECT count(*) AS n FROM tasks GROUP BY user_id) AS per_user"
        ).fetchone()
    seed_info["found"] = (
        f"{total:,} tasks of {users} users ({least} to {most} per user), {len(tokens)} tokens"
    )
    if total != args.users * args.tasks_per_user or users != args.users:
        log(
            f"warning: expected {args.users} users x {args.tasks_per_user} tasks, "
            f"found {seed_info['found']}"
        )
    log(f"seeded {len(tokens)} users; {seed_info['printed_line']}")
    return seed_info, tokens, tokens_file


def bench_floor(args, env, run_dir, label, data_path=None):  # noqa: PLR0917
    """The constant floor at every concurrency; with `data_path`, the GET's floor too."""
    floor = start_server(
        f"floor-{label}", "floor:app", ["--pythonpath", str(HERE)], env, "/", run_dir
    )
    try:
        wrk(
            floor.port,
            "floor",
            max(args.connections),
            args.warmup,
            args.threads,
            run_dir / "none",
            args.timeout,
        )
        settle(floor.port, path="/")
        rows = [run_scenario(floor, "floor", c, args, run_dir / "none") for c in args.connections]
        for row in rows:
            row.label = label
        if data_path is not None and "get" in args.scenarios:
            for connections in args.connections:
                row = run_scenario(floor, "get", connections, args, data_path)
                row.scenario, row.label = FLOOR_GET, label
                rows.append(row)
        rss = floor.worker_rss_mb()
    finally:
        floor.stop()
    return floor, rows, rss


def bench_api(args, env, db_url, tokens, run_dir):
    api = start_server("api", "wsgi:app", [], env, "/healthz", run_dir)
    rows = []
    try:
        data_path = run_dir / "data.tsv"
        export_data(db_url, tokens, data_path)

        def warm_up(scenario):
            wrk(
                api.port,
                scenario,
                max(args.connections),
                args.warmup,
                args.threads,
                data_path,
                args.timeout,
            )
            settle(api.port, db_url)

        warm_up("get")
        for scenario in args.scenarios:
            if scenario in WARMED:
                # Every worker keeps list pages per user (todo/pagecache.py): the first
                # pass over 100 users is a miss in each worker. Measure the steady state;
                # the mix shows lists read again after writes.
                warm_up(scenario)
            for connections in args.connections:
                if scenario in NEEDS_IDS:  # fresh ids and states for every run
                    export_data(db_url, tokens, data_path)
                rows.append(run_scenario(api, scenario, connections, args, data_path, db_url))
        rss = api.worker_rss_mb()
        log(f"API worker RSS (MB) by pid: { {pid: round(mb, 1) for pid, mb in rss.items()} }")
    finally:
        api.stop()
    return api, rows, rss


def main():
    args = parse_args()
    os.chdir(ROOT)
    run_dir = OUT / f"run-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    run_dir.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for tool in ("flask", "gunicorn"):
        if not (BIN / tool).exists():
            fail(f"no {tool} beside {sys.executable}: run this with the project's virtualenv")
    ensure_wrk()
    started = time.monotonic()

    with database(os.environ.get("DATABASE_URL"), args.keep_db) as db_url:
        prod_env, seed_env = environments(db_url)
        seed_info, tokens, tokens_file = prepare(args, db_url, prod_env, seed_env, run_dir)
        if args.profile:
            profile(args, prod_env, db_url, tokens, run_dir)
            return
        plans_path = args.out / "PLANS.md"
        if not args.no_plans:
            result = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "plans.py"),
                    "--tokens-file",
                    str(tokens_file),
                    "--out",
                    str(plans_path),
                ],
                check=False,
                cwd=ROOT,
                env=prod_env,
            )
            if result.returncode != 0:
                fail("plans.py failed")
        # The floor is measured before and after the API, and the API's ratios use the
        # mean of both: on a machine whose load drifts, one floor would skew them all.
        data_path = run_dir / "data.tsv"
        export_data(db_url, tokens, data_path)
        floor, floor_rows, floor_rss = bench_floor(args, prod_env, run_dir, "before", data_path)
        api, api_rows, rss = bench_api(args, prod_env, db_url, tokens, run_dir)
        floor_rows += bench_floor(args, prod_env, run_dir, "after")[1]
        found_versions, all_packages = versions(db_url)

    floor_rps, drift = floor_baseline(floor_rows)
    for row in api_rows + [r for r in floor_rows if r.scenario == FLOOR_GET]:
        row.ratio = row.stats["rps"] / floor_rps[row.connections]
    rows = (
        [r for r in floor_rows if r.label == "before"]
        + api_rows
        + [r for r in floor_rows if r.label == "after"]
    )
    checks = check_targets(rows, rss)
    context = {
        "trial": args.trial,
        "command": "python benchmarks/run.py" + (f" {args.trial}" if args.trial else ""),
        "finished": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "duration": args.duration,
        "threads": args.threads,
        "warmup": args.warmup,
        "users": args.users,
        "per_user": args.tasks_per_user,
        "rows": rows,
        "checks": checks,
        "ceiling": get_ceiling(rows),
        "rss": rss,
        "floor_rss": floor_rss,
        "floor_rps": floor_rps,
        "drift": drift,
        "seed": seed_info,
        "api_command": api.command,
        "floor_command": floor.command,
        "server_env": "HOST=127.0.0.1 PORT=<a free port> ENVIRONMENT=production LOG_LEVEL="
        + prod_env["LOG_LEVEL"]
        + " JWT_SECRET=<random> DATABASE_URL=<the benchmark database>"
        + "".join(
            f" {k}={os.environ[k]}"
            for k in ("WEB_CONCURRENCY", "DB_POOL_SIZE", "DB_MAX_OVERFLOW")
            if k in os.environ
        ),
        "gunicorn_settings": ", ".join(f"{k}={v}" for k, v in api.config.items()),
        "machine": machine(),
        "versions": found_versions,
        "all_packages": all_packages,
        "plans_name": "PLANS.md",
    }
    (run_dir / "results.json").write_text(
        json.dumps(
            [
                {"scenario": r.scenario, "connections": r.connections, "ratio": r.ratio, **r.stats}
                for r in rows
            ],
            indent=1,
        )
    )
    results_path = args.out / "RESULTS.md"
    write_results(results_path, context)
    if not args.trial and args.out == HERE:
        update_readme(context)
    print()
    print("\n".join(results_table(rows)))
    print()
    for name, value, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    if context["ceiling"]:
        print(context["ceiling"])
    print()
    log(
        f"wrote {results_path}"
        + ("" if args.no_plans else f" and {plans_path}")
        + f" in {time.monotonic() - started:.0f} s; logs in {run_dir}"
    )


def profile(args, env, db_url, tokens, run_dir):
    """One worker under pyinstrument (benchmarks/profile_app.py) serving one scenario."""
    try:
        importlib.metadata.version("pyinstrument")
    except importlib.metadata.PackageNotFoundError:
        fail("--profile needs pyinstrument: pip install -e '.[dev]'")
    scenario, connections = args.profile, args.connections[0]
    prefix = OUT / f"profile-{scenario}-c{connections}-{run_dir.name[4:]}"
    # the first requests open the worker's pool connections: not what is looked for
    env = {**env, "WEB_CONCURRENCY": "1", "PROFILE_OUT": str(prefix), "PROFILE_SKIP": "20"}
    api = start_server(
        "api-profile", "profile_app:app", ["--pythonpath", str(HERE)], env, "/healthz", run_dir
    )
    try:
        data_path = run_dir / "data.tsv"
        export_data(db_url, tokens, data_path)
        run_scenario(api, scenario, connections, args, data_path, db_url)
    finally:
        api.stop()
    reports = [Path(f"{prefix}{suffix}") for suffix in (".html", ".txt", "-flat.txt")]
    if not all(report.exists() for report in reports):
        fail(f"the profiled worker wrote no report; see {api.log_path}")
    flat = reports[2].read_text().splitlines()
    print("\n".join(flat[:45]))
    log(
        "profile (1 worker; the rate above is under the profiler): "
        + ", ".join(str(report.relative_to(ROOT)) for report in reports)
    )


if __name__ == "__main__":
    main()
