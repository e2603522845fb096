"""Throwaway servers for the outage and crash tests: a PostgreSQL and a gunicorn of our own

Never the machine's shared PostgreSQL: these tests stop, restart and black-hole
their database. PostgreSQL comes from `initdb`/`pg_ctl` (PATH, else
/usr/local/bin or /usr/lib/postgresql/*/bin); as root it runs as the `postgres`
user, since PostgreSQL refuses to run as root.
"""

import contextlib
import glob
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import flask_migrate
import sqlalchemy as sa

from todo import create_app
from todo.extensions import db

ROOT = Path(__file__).resolve().parent.parent
APP_ROLE = "todo_app"
# Debian puts it in /usr/sbin, which a user's PATH may lack.
PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
NO_PGBOUNCER = "no pgbouncer binary: .ci/run installs Debian's pgbouncer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin(name: str) -> str:
    for candidate in [
        shutil.which(name),
        f"/usr/local/bin/{name}",
        *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True),
    ]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries")


def wait_until(predicate, timeout=15.0, interval=0.05):
    """Poll `predicate` until it is truthy; its last value (falsy on time-out)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Postgres:
    """A PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1."""

    def __init__(self):
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="todo-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args, check=True):
        command = list(args)
        if self.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
        if check and result.returncode:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}\n{log}")
        return result

    def init(self):
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        return self

    def start(self):
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base}"
            " -c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode="fast"):
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, user="postgres", database="postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self):
        """An engine as the superuser (who sees every row, RLS or not)."""
        return sa.create_engine(self.url(database="todo"), poolclass=sa.pool.NullPool)

    def create_app_database(self) -> str:
        """Database `todo`, owned by a non-superuser role, migrated; returns the app's URL."""
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER CREATEROLE"))
            connection.execute(sa.text(f"CREATE DATABASE todo OWNER {APP_ROLE}"))
        engine.dispose()
        url = self.url(user=APP_ROLE, database="todo")
        app = create_app(app_config(url))
        with app.app_context():
            flask_migrate.upgrade()
            db.engine.dispose()
        return url


def app_config(database_url: str) -> dict:
    from conftest import base_config  # noqa: PLC0415

    return base_config(database_url)


class BlackHole:
    """A listener that accepts connections and never answers: a hung database."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.accepted = []
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self):
        self.closed = True
        # shutdown() wakes the thread blocked in accept(); close() alone would not,
        # and the port would stay taken.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.sock.close()
        for connection in self.accepted:
            connection.close()


class Gunicorn:
    """`gunicorn wsgi:app` from the project root, on a free port."""

    def __init__(self, database_url: str, workers=2, extra_env=None, args=()):
        from conftest import TEST_SECRET  # noqa: PLC0415

        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="todo-gunicorn-", suffix=".log")
        env = {
            **os.environ,
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "JWT_SECRET": TEST_SECRET,
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        env.pop("FLASK_APP", None)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "wsgi:app",
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
                "--graceful-timeout", "20", "--timeout", "60", *args,
            ],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if not wait_until(lambda: self._answers() and len(self.workers()) == workers, 30):
            self.stop()
            raise RuntimeError(f"gunicorn did not start:\n{self.output()}")

    def _answers(self) -> bool:
        try:
            return self.request("GET", "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def workers(self) -> set[int]:
        """The pids of the master's children, read from /proc."""
        children = set()
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid and fields[0] != "Z":
                    children.add(int(stat.split("/")[2]))
        return children

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        """(status, headers, parsed JSON or None); OSError if the connection fails."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = json.dumps(body) if body is not None else None
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            raw = response.read()
            parsed = json.loads(raw) if raw else None
            return response.status, dict(response.getheaders()), parsed
        finally:
            connection.close()

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


class PgBouncer:
    """PgBouncer in transaction mode in front of `postgres`, one server connection.

    Every client transaction then runs on the same server session, as behind
    Neon's `-pooler` host, so anything session-scoped would leak between users.
    """

    def __init__(self, postgres: Postgres, database="todo"):
        if PGBOUNCER is None:
            raise RuntimeError(NO_PGBOUNCER)
        self.port = free_port()
        base = postgres.base
        config = base / "pgbouncer.ini"
        (base / "userlist.txt").write_text(f'"{APP_ROLE}" ""\n')
        config.write_text(
            f"[databases]\n{database} = host=127.0.0.1 port={postgres.port} dbname={database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {base / 'userlist.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 1\nmax_client_conn = 50\n"
            f"logfile = {base / 'pgbouncer.log'}\npidfile = {base / 'pgbouncer.pid'}\n"
        )
        for path in base.iterdir():
            if postgres.user is not None and path.name != "data":
                os.chown(path, postgres.user.pw_uid, postgres.user.pw_gid)
        command = [PGBOUNCER, str(config)]
        if postgres.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self.log = base / "pgbouncer.log"

        def listening():
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        if not wait_until(listening, 15):
            self.stop()
            raise RuntimeError(f"pgbouncer did not start:\n{self.log.read_text(errors='replace')}")

    def url(self, user=APP_ROLE, database="todo") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
