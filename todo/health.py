"""Service endpoints without a token: liveness, readiness, and the docs' assets"""

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, send_from_directory
from flask_smorest import abort

from todo.envelope import success
from todo.schema_version import schema_state

bp = Blueprint("service", __name__)


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
