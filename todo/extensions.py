"""Extension objects, created unbound and initialised in the application factory"""

import select

import sqlalchemy as sa
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from todo.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()


def _sqlite_pragmas(dbapi_connection, connection_record):
    # Per connection: SQLite enforces foreign keys only when asked, and WAL lets
    # readers and one writer (several gunicorn workers) proceed without locking.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def drop_if_closed_by_server(dbapi_connection, connection_record, connection_proxy):
    """Pool checkout hook: a connection the server has closed is replaced, not used.

    This replaces `pool_pre_ping`, which costs a round trip per checkout (a fifth
    of a one-task GET's database time). An idle connection has nothing to read:
    when its socket is readable, the server sent its goodbye (restart, failover,
    idle timeout) or closed it. SQLAlchemy documents raising DisconnectionError here: the pool then
    connects anew. A connection lost silently (no FIN) is not seen, nor was it by
    the ping, which would hang on it until the TCP timeout.
    """
    if dbapi_connection.closed:
        raise sa.exc.DisconnectionError("the connection is closed")
    poll = select.poll()
    poll.register(dbapi_connection.fileno(), select.POLLIN)
    if poll.poll(0):
        raise sa.exc.DisconnectionError("the server closed the connection")


def init_engines(app) -> None:
    """Register the per-backend connection hooks on the app's engines (no connection
    is made): SQLite's pragmas, PostgreSQL's check of connections at checkout."""
    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            elif engine.dialect.name == "postgresql":
                sa.event.listen(engine, "checkout", drop_if_closed_by_server)
