"""Whether the database's schema is the code's: the migration heads on both sides"""

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app

from todo.extensions import db


def expected_heads(app) -> set[str]:
    """The migration heads in the migrations folder, read once per process."""
    if "todo.heads" not in app.extensions:
        config = app.extensions["migrate"].migrate.get_config()
        app.extensions["todo.heads"] = set(ScriptDirectory.from_config(config).get_heads())
    return app.extensions["todo.heads"]


def schema_state() -> str | None:
    """None when the database answers at the latest migration, else the reason."""
    try:
        with db.engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except sa.exc.SQLAlchemyError as error:
        return f"database unreachable ({type(getattr(error, 'orig', None) or error).__name__})"
    expected = expected_heads(current_app._get_current_object())
    if current != expected:
        found = sorted(current) or "no migration"
        return f"schema at {found}, expected {sorted(expected)}: run flask db upgrade"
    return None
