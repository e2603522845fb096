"""The framework floors: minimal Flask routes, served like the API.

benchmarks/run.py serves this app with the same gunicorn configuration as the API
(`gunicorn -c gunicorn.conf.py --pythonpath benchmarks floor:app`):

- `GET /` answers a small constant JSON object: what Flask under that
  configuration can do at all on the machine at hand. Every API scenario is given
  as a fraction of it.
- `GET /api/<user_id>/tasks/<task_id>` sends the one-task GET's own statement,
  with the row-level-security settings of todo/roundtrip.py, over one psycopg
  connection per worker, and answers the task's JSON. It has none of the API's
  stack (pool, token check, flask-smorest, hooks, envelope): no Flask app that
  reads a task from PostgreSQL on every request can be faster here, so its
  fraction of `GET /` is the ceiling of the API's GET target on this machine.
"""

import functools
import os
import uuid

import psycopg
import sqlalchemy as sa
from flask import Flask
from psycopg.rows import tuple_row
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from todo import roundtrip, tasks

app = Flask(__name__)

SQL, CONSTANTS = tasks.select_one("postgresql").compiled(pg_dialect.dialect())
STATEMENT_TIMEOUT_MS = os.environ.get("DB_STATEMENT_TIMEOUT_MS") or "5000"


@functools.cache
def connection() -> psycopg.Connection:
    """This worker's connection, opened on first use (after gunicorn's fork)."""
    url = sa.make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(False), autocommit=True)


@app.get("/")
def constant():
    return {"data": {"status": "ok"}, "meta": {"request_id": "floor"}}


@app.get("/api/<user_id>/tasks/<task_id>")
def one_round_trip(user_id, task_id):
    params = {
        **CONSTANTS,
        "owner_id": user_id,
        "task_id": uuid.UUID(task_id),
        "rls_user_id": user_id,
        "rls_statement_timeout": STATEMENT_TIMEOUT_MS,
    }
    with psycopg.ClientCursor(connection(), row_factory=tuple_row) as cursor:
        cursor.execute(roundtrip.SETTINGS + SQL, params)
        cursor.nextset()
        row = cursor.fetchone()
    if row is None:
        return {"error": {"code": "NOT_FOUND"}}, 404
    _, _, task_json = row  # (id, version, json): a plain row, as todo.tasks.get reads it
    body = b'{"data":' + task_json.encode() + b',"meta":{"request_id":"floor"}}'
    return app.response_class(body, mimetype="application/json")
