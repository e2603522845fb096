"""todo: the task API of a multi-user task manager"""

import os
import re
import types
from urllib.parse import unquote

from flask import Flask, request
from flask_cors import CORS

from todo import config as settings
from todo import health, hooks, limits, logs, metrics, rls
from todo.api import Api, EveryOperation
from todo.auth import TokenVerifier
from todo.extensions import db, init_engines, migrate
from todo.pagecache import PageCache
from todo.resources import register_blueprints

MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")

API_SETTINGS = {
    "API_TITLE": "todo",
    "API_VERSION": "1.0.0",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
    "API_SPEC_OPTIONS": {
        "info": {"description": "Tasks of the users of a multi-user task manager."},
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
        "security": [{"bearerAuth": []}],
    },
}

CORS_PATHS = r"/api/*"  # a regular expression flask-cors matches at the path's start
CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
]
CORS_EXPOSE_HEADERS = ["ETag", "Location", "X-Request-ID", "Idempotent-Replayed"]


class TodoFlask(Flask):
    """Flask, with `ensure_sync` answered once per function.

    Flask calls it for every hook and view of every request, and flask-smorest for
    each of its decorators (a dozen times for a GET): each call inspects the function
    anew. A bound method (MethodView's, a new one per request) is not kept.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync_functions = {}

    def ensure_sync(self, func):
        try:
            return self._sync_functions[func]
        except (KeyError, TypeError):  # TypeError: not hashable
            sync = super().ensure_sync(func)
            if isinstance(func, types.FunctionType):
                self._sync_functions[func] = sync
            return sync


def _exact(origin: str):
    # flask-cors reads "[" as a regular expression: an IPv6 origin is matched as written.
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) if "[" in origin else origin


def _vary_by_origin(response):
    # Whatever the number of origins, an answer of CORS_PATHS depends on Origin (without
    # one it has no CORS headers), but flask-cors says so only when one of several
    # origins matched: a cache could otherwise serve one origin's answer to another.
    # The path test mirrors flask-cors's own (cors_after_request): recheck it on upgrades.
    if re.match(CORS_PATHS, unquote(request.path)):
        response.vary.add("Origin")
    return response


def create_app(config=None):
    """Build the application from the environment, then `config` on top.

    The instance folder (development secret, default SQLite file) is INSTANCE_PATH
    from `config` or the environment, else Flask's default `instance/`.
    """
    instance_path = (config or {}).get("INSTANCE_PATH") or os.environ.get("INSTANCE_PATH")
    app = TodoFlask(
        __name__,
        static_folder=None,
        instance_path=os.path.abspath(instance_path) if instance_path else None,
    )
    app.config.update(API_SETTINGS)
    app.config.update(settings.from_env())
    app.config.update(config or {})
    settings.finalize(app.config, app.instance_path)
    app.json.sort_keys = False

    logs.configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    hooks.init_app(app)
    db.init_app(app)
    rls.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS)
    init_engines(app)
    if app.config["CORS_ORIGINS"]:
        CORS(
            app,
            resources={CORS_PATHS: {"origins": list(map(_exact, app.config["CORS_ORIGINS"]))}},
            always_send=False,  # no CORS headers on a request without Origin
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=600,
            vary_header=False,  # _vary_by_origin says it on every answer instead
        )
        app.after_request(_vary_by_origin)
    app.extensions["todo.tokens"] = TokenVerifier(app.config)
    app.extensions["todo.pages"] = PageCache(int(app.config["PAGE_CACHE_MB"] * 2**20))

    # The plugin also registers the header components Api's error responses name.
    api = Api(app, spec_kwargs={"extra_plugins": [EveryOperation()]})
    register_blueprints(api)
    app.register_blueprint(health.bp)
    limits.init_app(app)  # after the blueprints: it hooks in behind their authentication
    metrics.init_app(app)

    # The operator commands live beside wsgi.py, outside the package; registering
    # them here makes `flask tasks` exist however the app is found (--app or wsgi.py).
    from cli import tasks as tasks_commands  # noqa: PLC0415

    app.cli.add_command(tasks_commands)
    return app
