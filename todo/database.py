"""Engine events: liveness checks for pooled connections"""

import time

import sqlalchemy as sa

from todo.extensions import db

# A connection idle for longer than this is pinged before use. pool_pre_ping would
# ping before every request (a round trip and a third of a one-task GET's cost);
# a connection that dies while busy is caught anyway: the failed statement
# invalidates the whole pool, the request answers 503, the next one reconnects.
IDLE_PING_SECONDS = 10


def _mark_idle(dbapi_connection, record):
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, proxy):
    idle_since = record.info.pop("idle_since", None)
    if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
    except Exception as error:
        # The pool discards this connection and checks out another (SQLAlchemy's
        # documented pessimistic-disconnect recipe).
        raise sa.exc.DisconnectionError() from error


def init_app(app):
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "sqlite":
        sa.event.listen(engine, "checkin", _mark_idle)
        sa.event.listen(engine, "checkout", _ping_if_idle)
