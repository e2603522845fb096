"""Extension objects, created unbound and initialised in the application factory"""

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


def init_sqlite(app) -> None:
    """Register the SQLite pragmas on the app's SQLite engines (no connection is made)."""
    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
