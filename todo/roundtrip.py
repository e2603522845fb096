"""One statement for one user, in one database round trip: the API's hot path

Through the ORM session a one-task GET made five round trips (pre-ping, BEGIN,
the row-level-security settings, the SELECT, ROLLBACK) and spent about 3 ms of
CPU in SQLAlchemy on a 2-core machine; the driver alone needs 0.3 ms
(benchmarks/README.md). SQLAlchemy cannot send the settings and the statement
together, so on PostgreSQL `rows` sends both as one simple-protocol message on
the pooled driver connection: `SELECT set_config(...); <statement>`. PostgreSQL
runs the statements of one such message as one implicit transaction, so the
settings hold for the statement and end with it (as `SET LOCAL` would), and a
failing write leaves nothing behind. This also works behind PgBouncer in
transaction mode. Values are bound client-side by psycopg's ClientCursor.

Statements are SQLAlchemy Core, compiled once per dialect (`Statement`); their
values must be ones the driver adapts as they are (str, int, bool, UUID, aware
datetime): no SQLAlchemy bind processing runs here. Errors come out as
SQLAlchemy's exceptions, which todo/api.py turns into 409 or 503, and a lost
connection is invalidated in the pool, as SQLAlchemy's own execution would do.

On SQLite (no RLS, no network) the statement runs through SQLAlchemy as usual.
"""

import psycopg
import sqlalchemy as sa
from flask import current_app
from psycopg.rows import namedtuple_row, tuple_row

from todo.extensions import db

SETTINGS = (
    "SELECT set_config('app.user_id', %(rls_user_id)s, true) AS user_id,"
    " set_config('statement_timeout', %(rls_statement_timeout)s, true) AS statement_timeout;\n"
)


class Statement:
    """A SQLAlchemy statement compiled once per dialect: its SQL text, and the values
    of its constants (SQLAlchemy binds those too)."""

    def __init__(self, statement: sa.Executable):
        self.statement = statement
        self._compiled: dict[str, tuple[str, dict]] = {}

    def compiled(self, dialect) -> tuple[str, dict]:
        if dialect.name not in self._compiled:
            compiled = self.statement.compile(dialect=dialect)
            self._compiled[dialect.name] = (str(compiled), compiled.params)
        return self._compiled[dialect.name]


def rows(statement: Statement, user_id: str, params: dict, plain: bool = False) -> list:
    """The rows of `statement` run as `user_id` with `params`; [] when it returns none.

    On PostgreSQL rows are named tuples, or with `plain` bare tuples: cheaper, as
    psycopg makes the named tuples' type anew for each result (2.5 % of a one-task
    GET's instructions). On SQLite they are SQLAlchemy's rows either way.
    """
    engine = db.engine
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:
            result = connection.execute(statement.statement, params)
            return result.all() if result.returns_rows else []
    sql, constants = statement.compiled(engine.dialect)
    params = {**constants, **params}
    params["rls_user_id"] = user_id
    params["rls_statement_timeout"] = str(current_app.config["DB_STATEMENT_TIMEOUT_MS"])
    row_factory = tuple_row if plain else namedtuple_row
    try:
        return _run(engine, SETTINGS + sql, params, row_factory)
    except sa.exc.DBAPIError as error:
        if not (error.connection_invalidated and _nothing_was_written(sql, error.orig)):
            raise
    # The connection was lost (e.g. terminated by a restart whose goodbye had not yet
    # reached the checkout check) and nothing was written: once more, on a new one.
    return _run(engine, SETTINGS + sql, params, row_factory)


# The server ended the session and answered so: the statement's implicit
# transaction was rolled back (admin_shutdown, crash_shutdown, cannot_connect_now).
SESSION_ENDED_BY_SERVER = {"57P01", "57P02", "57P03"}


def _nothing_was_written(sql: str, error: Exception) -> bool:
    """Whether a lost connection's statement surely changed nothing: a read, or a
    write that the server said it aborted (a connection lost without an answer
    may have committed the write; that one is the client's to retry)."""
    return sql.lstrip().upper().startswith("SELECT") or (
        getattr(error, "sqlstate", None) in SESSION_ENDED_BY_SERVER
    )


def _run(engine: sa.Engine, sql: str, params: dict, row_factory=namedtuple_row) -> list:
    pooled = driver = None
    try:
        pooled = engine.raw_connection()
        driver = pooled.driver_connection
        driver.autocommit = True  # no BEGIN: the message is its own transaction
        with psycopg.ClientCursor(driver, row_factory=row_factory) as cursor:
            cursor.execute(sql, params)
            cursor.nextset()
            # rownumber, not description (which builds a Column per field on each call)
            return cursor.fetchall() if cursor.rownumber is not None else []
    except psycopg.Error as error:
        # Lost: a connection that was open is gone (not: none could be opened).
        lost = driver is not None and engine.dialect.is_disconnect(error, driver, None)
        if lost:
            pooled.invalidate(error)
        raise sa.exc.DBAPIError.instance(
            sql, None, error, psycopg.Error, connection_invalidated=lost, dialect=engine.dialect
        ) from error
    finally:
        if pooled is not None:
            if not driver.closed:
                driver.autocommit = False  # as the ORM session expects its connections
            pooled.close()
