"""Operator errors, database error messages, and erasing one user's data"""

import sqlalchemy as sa

from todo.extensions import db
from todo.models import Task
from todo.schema_version import schema_state


class OperatorError(Exception):
    """An operator command cannot go on; the message says why, in one line."""


QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement_timeout


def database_error(error: sa.exc.SQLAlchemyError) -> str:
    """One line for an operator about a failed database call (no SQL, no password)."""
    original = getattr(error, "orig", None) or error
    text = (str(original).strip().splitlines() or [type(original).__name__])[0]
    lowered = text.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return f"the database has no schema ({text}): run `flask db upgrade`"
    if getattr(original, "sqlstate", None) == QUERY_CANCELED:  # an OperationalError too
        return f"a statement ran past DB_STATEMENT_TIMEOUT_MS and was cancelled ({text})"
    if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return f"database unreachable: {text}"
    return f"database error: {text}"


def check_database() -> None:
    """Raise the database's error now if it is unreachable or has no schema, and
    OperatorError if its schema is not the code's: before writing, as an older one
    takes rows on SQLite and fails on PostgreSQL."""
    db.session.execute(sa.select(Task.id).limit(1))
    db.session.rollback()
    reason = schema_state()
    if reason:
        raise OperatorError(reason)


def user_tables() -> list[sa.Table]:
    """Every table that holds rows per user, children before parents."""
    return [table for table in reversed(db.metadata.sorted_tables) if "user_id" in table.c]


def count_user_rows(user_id: str) -> dict[str, int]:
    """Rows of `user_id` in each per-user table.

    The read's transaction ends here: a confirmation may follow, and on PostgreSQL an
    open transaction would keep its locks for as long as the operator takes to answer.
    """
    counts = {
        table.name: db.session.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.user_id == user_id)
        )
        for table in user_tables()
    }
    db.session.rollback()
    return counts


def count_tasks(user_id: str) -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(Task).where(Task.user_id == user_id)
    )


def require_user(user_id: str) -> int:
    """The number of tasks of `user_id`; OperatorError when there are none."""
    count = count_tasks(user_id)
    if not count:
        raise OperatorError(f"user {user_id!r} has no tasks (check the id)")
    return count


def purge_user(user_id: str) -> dict[str, int]:
    """Delete every row of `user_id` from every per-user table, in one transaction."""
    removed = {}
    try:
        for table in user_tables():
            result = db.session.execute(table.delete().where(table.c.user_id == user_id))
            removed[table.name] = result.rowcount
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return removed
