"""Service endpoints without a token: liveness, readiness, and the docs' assets"""

from pathlib import Path

import sqlalchemy as sa
import swagger_ui_bundle
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, current_app, send_from_directory
from flask_smorest import abort

from todo.envelope import success
from todo.extensions import db

bp = Blueprint("service", __name__)


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


@bp.get("/healthz")
def healthz():
    return success({"status": "ok"})


@bp.get("/readyz")
def readyz():
    reason = schema_state()
    if reason:
        abort(503, message=f"Not ready: {reason}.")
    return success({"status": "ready"})


@bp.get("/docs/assets/<path:filename>")
def docs_assets(filename):
    """Swagger UI's files, shipped in a package so /docs works with no internet."""
    return send_from_directory(Path(swagger_ui_bundle.swagger_ui_path), filename)
