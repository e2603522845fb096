"""The operator's load check (`flask tasks bench`)

Drives concurrent HTTP requests at a running server, or at a gunicorn it starts
itself on a free 127.0.0.1 port against the configured database, and reports the
rate, latency percentiles and errors. Bounded: it stops after --duration seconds
or --requests requests, and never runs longer than MAX_SECONDS.
"""

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
import urllib3

import todo
from todo import devtokens, seeding
from todo.admin import OperatorError
from todo.config import http_url
from todo.extensions import db
from todo.models import Task, user_id_problem
from todo.stats import percentile

MAX_SECONDS = 600
STARTUP_SECONDS = 30
TOKEN_TTL = timedelta(hours=2)
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
BENCH_USER_PREFIX = "bench-user-"
TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII
EXPECTED = {"list": 200, "get": 200, "create": 201, "complete": 200}
SCENARIOS = {
    "list": {"list": 1.0},
    "get": {"get": 1.0},
    "create": {"create": 1.0},
    "mixed": {"list": 0.5, "get": 0.3, "create": 0.15, "complete": 0.05},
}
CONFIG_ENV = (
    "ENVIRONMENT",
    "DATABASE_URL",
    "JWT_SECRET",
    "JWT_JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_USER_CLAIM",
    "SECRET_KEY",
)


def check_url(url: str, allow_remote: bool) -> str:
    """The base URL without a trailing slash; ValueError unless http(s) on loopback."""
    parts = http_url(url)
    if parts is None:
        raise ValueError(f"--url {url!r} is not an http(s)://host[:port] URL")
    if parts.hostname not in LOOPBACK and not allow_remote:
        raise ValueError(
            f"--url {url!r} is not on 127.0.0.1: add --allow-remote to load another host"
        )
    return url.rstrip("/")


# Users and tokens


def pick_users(count: int, seed_tasks: int) -> tuple[list[str], list[str]]:
    """`count` users from the database, seeding bench users when there are fewer.

    Returns the users, and those of them that were just seeded.
    """
    users = list(
        db.session.scalars(sa.select(Task.user_id).distinct().order_by(Task.user_id).limit(count))
    )
    db.session.rollback()  # end the read before seeding on another connection
    missing, new = count - len(users), []
    if missing * seed_tasks > seeding.MAX_TASKS:
        raise OperatorError(
            f"{missing:,} users to seed x {seed_tasks:,} tasks is more than"
            f" {seeding.MAX_TASKS:,} in one run"
        )
    if missing > 0:
        taken = set(users)
        new = [
            user_id
            for user_id in (f"{BENCH_USER_PREFIX}{n:04d}" for n in range(1, count + 1))
            if user_id not in taken
        ][:missing]
        seeding.seed(new, seed_tasks)
    return users + new, new


def read_tokens(path: str) -> dict[str, str]:
    """{user id: token} from a JSON file, such as `flask tasks seed --tokens-file` writes."""
    try:
        with open(path, encoding="utf-8") as source:
            tokens = json.load(source)
    except (OSError, ValueError) as error:
        raise OperatorError(f"cannot read tokens from {path}: {error}") from None
    if (
        not isinstance(tokens, dict)
        or not tokens
        or not all(_usable(user_id, token) for user_id, token in tokens.items())
    ):
        raise OperatorError(f"{path} is not a JSON object of user id -> token")
    return tokens


def _usable(user_id: str, token) -> bool:
    """A user id the API accepts, and a token that a header can carry (a JWT is
    base64url and dots)."""
    return (
        not user_id_problem(user_id)
        and isinstance(token, str)
        and TOKEN.fullmatch(token) is not None
    )


def mint_tokens(config, users: list[str]) -> dict[str, str]:
    try:
        return {user: devtokens.mint(config, user, TOKEN_TTL) for user in users}
    except devtokens.TokenRefused as error:
        raise OperatorError(f"cannot mint bench tokens: {error}") from None


def check_minting(config) -> None:
    """OperatorError unless this configuration may mint tokens: checked before
    bench users are seeded, so that a refusal writes nothing."""
    try:
        devtokens.signing_algorithm(config)
    except devtokens.TokenRefused as error:
        raise OperatorError(f"cannot mint bench tokens: {error}") from None


def check_reachable(base_url: str, timeout: float) -> None:
    """OperatorError unless the server at `base_url` answers (any status) to
    /healthz: checked before bench users are seeded."""
    pool = urllib3.PoolManager(
        retries=False, timeout=urllib3.Timeout(connect=min(timeout, 5), read=timeout)
    )
    try:
        pool.request("GET", f"{base_url}/healthz")
    except urllib3.exceptions.HTTPError as error:
        raise OperatorError(f"{base_url} unreachable: {type(error).__name__}") from None
    finally:
        pool.clear()


# A server of our own


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(config) -> dict[str, str]:
    """The environment that makes gunicorn's app the same as this one."""
    environment = dict(os.environ)
    for name in CONFIG_ENV:
        value = config.get(name)
        if value:
            environment[name] = str(value)
        else:
            environment.pop(name, None)
    environment["JWT_ALGORITHMS"] = ",".join(config["JWT_ALGORITHMS"])
    environment["CORS_ORIGINS"] = ",".join(config["CORS_ORIGINS"])
    environment["LOG_LEVEL"] = "WARNING"  # no access log line per request
    environment.pop("FLASK_APP", None)
    return environment


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) if text else "no output"


@contextlib.contextmanager
def local_server(config, workers: int = 2, threads: int = 4) -> Iterator[str]:
    """Run `gunicorn wsgi:app` on a free loopback port; yields its base URL."""
    root = Path(todo.__file__).resolve().parent.parent
    if not (root / "wsgi.py").exists():
        raise OperatorError(f"no wsgi.py in {root}: start the server yourself and pass --url")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        str(root),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        "--no-control-socket",
        "wsgi:app",
    ]
    with tempfile.TemporaryDirectory(prefix="todo-bench-") as folder:
        log = Path(folder) / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                cwd=root,
                env=server_environment(config),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_ready(process, base_url, log)
            yield base_url
        finally:
            process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process: subprocess.Popen, base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5))
    try:
        _poll_ready(process, base_url, log, pool, deadline)
    finally:
        pool.clear()  # a kept-alive connection would hold a worker at shutdown


def _poll_ready(process, base_url, log, pool, deadline) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OperatorError(f"the server exited ({process.returncode}): {_tail(log)}")
        try:
            response = pool.request("GET", f"{base_url}/readyz")
        except urllib3.exceptions.HTTPError:
            time.sleep(0.2)
            continue
        if response.status == 200:
            return
        try:
            reason = json.loads(response.data)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {response.status}"
        raise OperatorError(f"the server is not ready: {reason}")
    raise OperatorError(f"the server did not start within {STARTUP_SECONDS} s: {_tail(log)}")


# Load


@dataclass
class Sample:
    operation: str
    status: int | str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == EXPECTED[self.operation]


@dataclass
class Load:
    base_url: str
    tokens: dict[str, str]
    scenario: str = "mixed"
    concurrency: int = 4
    timeout: float = 10.0
    task_ids: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        self.pool = urllib3.PoolManager(
            maxsize=self.concurrency,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=min(self.timeout, 5), read=self.timeout),
        )
        self.users = sorted(self.tokens)

    def close(self) -> None:
        """Drop the kept-alive connections, so the server can stop at once."""
        self.pool.clear()

    def _url(self, user_id: str, suffix: str = "") -> str:
        return f"{self.base_url}/api/{quote(user_id, safe='')}/tasks{suffix}"

    def _headers(self, user_id: str, body: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.tokens[user_id]}"}
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    def prepare(self) -> None:
        """Check the tokens and learn some task ids of every user (creating one if none)."""
        for user_id in self.users:
            try:
                response = self.pool.request(
                    "GET", self._url(user_id, "?limit=100"), headers=self._headers(user_id)
                )
            except urllib3.exceptions.HTTPError as error:
                reason = type(error).__name__
                raise OperatorError(f"{self.base_url} unreachable: {reason}") from None
            if response.status in (401, 403):
                raise OperatorError(
                    f"the server refused the bench token of {user_id!r} ({response.status}):"
                    " does it share this JWT_SECRET?"
                )
            if response.status != 200:
                raise OperatorError(f"listing {user_id!r}'s tasks answered {response.status}")
            ids = [task["id"] for task in json.loads(response.data)["data"]]
            if not ids and self.scenario in ("get", "mixed"):
                created = self._send("create", user_id, random.Random())
                if created.status != 201:
                    raise OperatorError(
                        f"creating a task for {user_id!r} answered {created.status}"
                    )
                ids = [json.loads(created.data)["data"]["id"]]
            self.task_ids[user_id] = ids

    def _send(self, operation: str, user_id: str, rng: random.Random):
        if operation == "list":
            return self.pool.request(
                "GET", self._url(user_id, "?limit=20"), headers=self._headers(user_id)
            )
        if operation == "create":
            body = json.dumps({"title": f"Bench task {rng.randint(1, 10**9)}"})
            return self.pool.request(
                "POST", self._url(user_id), body=body, headers=self._headers(user_id, True)
            )
        task_id = rng.choice(self.task_ids[user_id])
        if operation == "get":
            return self.pool.request(
                "GET", self._url(user_id, f"/{task_id}"), headers=self._headers(user_id)
            )
        return self.pool.request(
            "PATCH", self._url(user_id, f"/{task_id}/complete"), headers=self._headers(user_id)
        )

    def run(self, duration: float | None = None, requests: int | None = None):
        """Samples of every request sent, and the seconds it took; bounded by both limits."""
        operations, weights = zip(*SCENARIOS[self.scenario].items(), strict=True)
        limit = requests or sys.maxsize
        samples: list[Sample] = []
        lock = threading.Lock()
        issued = 0
        started = time.perf_counter()
        deadline = started + min(duration or MAX_SECONDS, MAX_SECONDS)

        def worker(index: int) -> None:
            nonlocal issued
            rng = random.Random(index)
            while True:
                with lock:
                    if issued >= limit or time.perf_counter() >= deadline:
                        return
                    issued += 1
                operation = rng.choices(operations, weights)[0]
                user_id = rng.choice(self.users)
                begun = time.perf_counter()
                try:
                    status = self._send(operation, user_id, rng).status
                except urllib3.exceptions.HTTPError as error:
                    status = type(error).__name__
                samples.append(Sample(operation, status, time.perf_counter() - begun))

        threads = [
            threading.Thread(target=worker, args=(n,), daemon=True) for n in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return samples, time.perf_counter() - started


# Report


def _figures(samples: list[Sample], elapsed: float) -> dict:
    latencies = sorted(sample.seconds * 1000 for sample in samples)
    errors = Counter(str(sample.status) for sample in samples if not sample.ok)
    figures = {
        "requests": len(samples),
        "requests_per_s": round(len(samples) / elapsed, 1) if elapsed else None,
        "errors": sum(errors.values()),
        "errors_by_status": dict(sorted(errors.items())),
    }
    for name, p in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99), ("max_ms", 100)):
        figures[name] = round(percentile(latencies, p), 2) if latencies else None
    return figures


def summarize(samples: list[Sample], elapsed: float, **settings) -> dict:
    by_operation: dict[str, list[Sample]] = {}
    for sample in samples:
        by_operation.setdefault(sample.operation, []).append(sample)
    return {
        **settings,
        "duration_s": round(elapsed, 3),
        **_figures(samples, elapsed),
        "operations": {
            name: _figures(group, elapsed) for name, group in sorted(by_operation.items())
        },
    }


def failures(summary: dict, p95_limit_ms: float | None) -> list[str]:
    """Why this run fails the check: failed requests, or a p95 above the limit."""
    found = []
    if summary["errors"]:
        found.append(f"{summary['errors']} request(s) failed")
    p95 = summary["p95_ms"]
    if p95_limit_ms is not None and p95 is not None and p95 > p95_limit_ms:
        found.append(f"p95 {p95} ms is above --p95-ms {p95_limit_ms:g}")
    return found


def render(summary: dict) -> str:
    """The summary as a table for a terminal."""
    header = ("operation", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors")
    rows = [
        (
            name,
            *(
                figures[key]
                for key in (
                    "requests",
                    "requests_per_s",
                    "p50_ms",
                    "p95_ms",
                    "p99_ms",
                    "max_ms",
                    "errors",
                )
            ),
        )
        for name, figures in [*summary["operations"].items(), ("all", summary)]
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(
        f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{widths[i]}}}" for i in range(len(header))
    )
    errors = summary["errors_by_status"]
    return "\n".join(
        [
            f"{summary['scenario']} against {summary['url']}: {summary['users']} users,"
            f" concurrency {summary['concurrency']}, {summary['requests']} requests"
            f" in {summary['duration_s']:.1f} s",
            line.format(*header),
            *(line.format(*("-" if value is None else value for value in row)) for row in rows),
            "errors by status: "
            + (", ".join(f"{status} x{count}" for status, count in errors.items()) or "none"),
        ]
    )
