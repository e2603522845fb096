"""The core flows through a real PgBouncer in transaction mode (what Neon's -pooler hosts are)"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from conftest import make_token
from helpers import skip_unless_required
from runtime_servers import free_port
from servers import NO_PGBOUNCER, PGBOUNCER

from todo.extensions import db

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])

# Three server connections handed out in turn: a statement prepared on one is
# missing on the next, exactly what breaks prepared statements behind a pooler.
# (Three, not two: a request of two transactions would always find its
# statement on the same server of two.)
SERVERS = 3
INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = {servers}
server_round_robin = 1
max_client_conn = 20
ignore_startup_parameters = options
"""


@pytest.fixture
def pgbouncer_binary():
    if PGBOUNCER is None:
        skip_unless_required("REQUIRE_PGBOUNCER", NO_PGBOUNCER)
    return PGBOUNCER


@pytest.fixture
def pgbouncer(pgbouncer_binary, database_url):
    """A PgBouncer in transaction mode in front of the test database; yields its URL."""
    url = sa.make_url(database_url)
    directory = Path(tempfile.mkdtemp(prefix="todo-pgbouncer-"))
    directory.chmod(0o755)  # PgBouncer refuses to run as root: it runs as nobody
    listen = free_port()
    (directory / "pgbouncer.ini").write_text(
        INI.format(
            servers=SERVERS,
            host=url.host,
            port=url.port or 5432,
            listen=listen,
            directory=directory,
        )
    )
    (directory / "userlist.txt").write_text(f'"{url.username}" ""\n')
    command = [pgbouncer_binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    log = open(directory / "pgbouncer.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    bounced = url.set(port=listen)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                psycopg.connect(
                    host="127.0.0.1",
                    port=listen,
                    user=url.username,
                    dbname=url.database,
                    connect_timeout=2,
                ).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((directory / "pgbouncer.log").read_text()) from None
                time.sleep(0.2)
        # Open every server session now (that many transactions at once), so that
        # PgBouncer rotates through them from the first test query on.
        clients = [
            psycopg.connect(host="127.0.0.1", port=listen, user=url.username, dbname=url.database)
            for _ in range(SERVERS)
        ]
        for connection in clients:
            connection.execute("SELECT 1")
        for connection in clients:
            connection.commit()  # a client leaving mid-transaction would cost its server
            connection.close()
        yield bounced
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_this_pgbouncer_does_break_prepared_statements(pgbouncer):
    """The control: psycopg's defaults fail through it, so the tests below mean something."""
    with (
        psycopg.connect(
            host="127.0.0.1",
            port=pgbouncer.port,
            user=pgbouncer.username,
            dbname=pgbouncer.database,
            autocommit=True,
        ) as connection,
        pytest.raises(psycopg.errors.DatabaseError, match="prepared statement"),
    ):
        for n in range(12):  # prepared on the 6th run, then missing on the other server
            connection.execute("SELECT count(*) FROM tasks WHERE user_id = %s", (str(n),))


def core_flows(client, user):
    headers = {"Authorization": f"Bearer {make_token(user)}"}
    base = f"/api/{user}/tasks"
    # The same INSERT ten times on one connection. Commits keep psycopg's statement
    # counts (a ROLLBACK, as after a GET, resets them), so by default it would be
    # prepared on the 6th and looked for on another server from the 7th.
    # The plain requests are one simple-protocol message each (todo/roundtrip.py),
    # which prepares nothing; the Idempotency-Key POST goes through the ORM session.
    ids = []
    for n in range(10):
        created = client.post(base, json={"title": f"task {n}"}, headers=headers)
        assert created.status_code == 201, created.json
        ids.append(created.json["data"]["id"])
    for n in range(10):
        keyed = {**headers, "Idempotency-Key": f"key-{n}"}
        created = client.post(base, json={"title": f"keyed {n}"}, headers=keyed)
        assert created.status_code == 201, created.json
        assert (
            client.delete(f"{base}/{created.json['data']['id']}", headers=headers).status_code
            == 204
        )
    for n, task_id in enumerate(ids[:6]):
        assert client.get(f"{base}/{task_id}", headers=headers).json["data"]["title"] == f"task {n}"
        listed = client.get(f"{base}?status=pending&limit=5", headers=headers)
        assert listed.status_code == 200
        assert listed.json["meta"]["total"] == 10
    task_id = ids[0]
    put = client.put(f"{base}/{task_id}", json={"title": "Buy oat milk"}, headers=headers)
    assert put.status_code == 200
    assert put.json["data"]["title"] == "Buy oat milk"
    done = client.patch(f"{base}/{task_id}/complete", headers=headers)
    assert done.status_code == 200
    assert done.json["data"]["is_completed"] is True
    for task_id in ids:
        assert client.delete(f"{base}/{task_id}", headers=headers).status_code == 204
    assert client.get(f"{base}/{ids[0]}", headers=headers).status_code == 404
    assert client.get(base, headers=headers).json["meta"]["total"] == 0


# One pooled connection in the app, so every request reuses the same client
# connection (and PgBouncer alternates the server sessions under it).
ONE_CONNECTION = {"DB_POOL_SIZE": 1, "DB_MAX_OVERFLOW": 0}


def test_core_flows_through_a_pooler_host(pgbouncer, make_app):
    # A Neon-style "-pooler" host name; libpq connects to hostaddr, the name is only a name.
    url = pgbouncer.set(host="ep-test-123456-pooler.localhost").update_query_dict(
        {"hostaddr": "127.0.0.1"}
    )
    app = make_app(DATABASE_URL=url.render_as_string(hide_password=False), **ONE_CONNECTION)

    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["prepare_threshold"] is None
    core_flows(app.test_client(), "alice")


def test_core_flows_with_prepared_statements_off(pgbouncer, make_app):
    app = make_app(
        DATABASE_URL=pgbouncer.render_as_string(hide_password=False),
        DB_PREPARED_STATEMENTS=False,
        **ONE_CONNECTION,
    )

    core_flows(app.test_client(), "bob")
    with app.app_context():
        assert db.engine.pool.size() == 1


def test_the_same_flows_fail_with_prepared_statements_on(pgbouncer, make_app):
    """The control at the app's level: what the settings above prevent."""
    app = make_app(
        DATABASE_URL=pgbouncer.render_as_string(hide_password=False),
        DB_PREPARED_STATEMENTS=True,
        **ONE_CONNECTION,
    )

    with pytest.raises(sa.exc.ProgrammingError, match="prepared statement"):
        core_flows(app.test_client(), "carol")
