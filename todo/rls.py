"""Row-level security on PostgreSQL: each transaction sees only its user's rows

Migrations 0003 and 0004 enable and force policies on `tasks`, `idempotency_keys`
and `task_revisions` that admit a row when
`user_id = current_setting('app.user_id', true)`, and every row to the role
`<database>_operator`. The API's endpoints send these settings in the
message of their one statement (todo/roundtrip.py). Here, for what goes through
the ORM session (the Idempotency-Key POST, the CLI), every transaction starts by
setting the user (and, to bypass, the operator role) with `set_config(..., true)`,
which lasts until the end of that transaction only: nothing leaks into the next
user of a pooled connection, and it works behind PgBouncer in transaction mode,
where session state (`SET`) does not survive between transactions.

The user is the request's `g.user_id`. Outside a request (the CLI) no user is set
and no row is visible, unless the code says who it acts for (`acting_as`) or that
it must see every user's rows (`bypass`). SQLite has no RLS: there, as on
PostgreSQL, every query of the application also filters by user.

The database role must not be a superuser, and no BYPASSRLS role: those ignore
every policy, FORCE included. It should own the tables (it runs the migrations).
"""

from contextlib import contextmanager
from contextvars import ContextVar

import sqlalchemy as sa
from flask import current_app, g, has_app_context

from todo.extensions import db

_bypass: ContextVar[bool] = ContextVar("todo_rls_bypass", default=False)
_acting_as: ContextVar[str | None] = ContextVar("todo_rls_acting_as", default=None)

# One round trip at the start of each transaction. statement_timeout rides along:
# behind PgBouncer the connection's startup options (todo/config.py) are dropped,
# and a per-transaction setting is the one that holds there too.
# The role `none` is the connection's own (RESET ROLE). The operator role exists
# once migration 0003 ran; before, there is nothing to bypass.
SET_TRANSACTION = sa.text(
    "SELECT set_config('app.user_id', :user_id, true),"
    " set_config('role', CASE WHEN :bypass AND EXISTS (SELECT FROM pg_roles"
    " WHERE rolname = current_database() || '_operator')"
    " THEN current_database() || '_operator' ELSE 'none' END, true),"
    " set_config('statement_timeout', :statement_timeout, true)"
)


def current_user_id() -> str:
    user_id = _acting_as.get()
    if user_id is None and has_app_context():
        user_id = g.get("user_id")
    return user_id or ""


def _set_transaction_user(session, transaction, connection):
    if connection.dialect.name != "postgresql":
        return
    connection.execute(
        SET_TRANSACTION,
        {
            "user_id": current_user_id(),
            "bypass": _bypass.get(),
            "statement_timeout": str(current_app.config["DB_STATEMENT_TIMEOUT_MS"]),
        },
    )


def apply(connection) -> None:
    """Set this module's settings on a transaction begun outside the ORM session
    (e.g. `db.engine.begin()` for a bulk insert)."""
    _set_transaction_user(None, None, connection)


def init_app(app) -> None:
    # Flask-SQLAlchemy's scoped session produces one Session class for every app:
    # listen once, on that class.
    if not sa.event.contains(db.session, "after_begin", _set_transaction_user):
        sa.event.listen(db.session, "after_begin", _set_transaction_user)


def _apply_now() -> None:
    """Re-set the settings of the session's transaction when one is under way."""
    transaction = db.session().get_transaction()
    if transaction is not None and transaction.is_active:
        connection = db.session.connection()
        _set_transaction_user(db.session, None, connection)


@contextmanager
def _setting(variable: ContextVar, value):
    token = variable.set(value)
    try:
        _apply_now()
        yield
    except BaseException:
        # The transaction still holds this block's settings, and may be aborted so
        # that they cannot be re-set: end it, so that they cannot outlive the block.
        variable.reset(token)
        db.session.rollback()
        raise
    variable.reset(token)
    _apply_now()


def bypass():
    """Let the session see and change every user's rows: for operator commands only.

    An error inside the block rolls back the session's transaction (as for
    `acting_as`): it was elevated, and a caller that caught the error must not go
    on in it."""
    return _setting(_bypass, True)


def acting_as(user_id: str):
    """Bind the session's transactions to `user_id` outside a request (e.g. the CLI).

    An error inside the block rolls back the session's transaction, as for `bypass`."""
    return _setting(_acting_as, user_id)
