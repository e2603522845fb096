"""PL/pgSQL for the hot statements, whose plans PostgreSQL keeps per connection

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

The API sends its statements in the simple protocol (todo/roundtrip.py), so
PostgreSQL parses and plans each one anew, and a SQL function's body is planned
again on every call. A PL/pgSQL function keeps the plans of its queries for the
life of the server connection, which also holds behind PgBouncer in transaction
mode (a plan, unlike a prepared statement, is the server's own state). Measured
on a 2-core machine, PostgreSQL CPU per request:

- task_by_id(): the one-task GET's query, whose planning was about 50 of the
  210 us per GET (now about 150). It runs with the caller's rights, so the
  row-level security of 0003 applies as to the query itself. The query is
  todo.tasks.select_one_inline("postgresql") as it was written here, the task's
  JSON included: tests/test_storage.py holds the two equal, and a change to the
  task's JSON needs a migration that replaces this function.
- bump_task_revisions(), 0004's trigger function, now runs the upsert itself
  instead of calling bump_task_revisions_of() (a SQL function, planned on every
  write): about 560 -> 450 us per UPDATE. bump_task_revisions_of() stays, for the
  bulk loaders that defer the trigger.

SQLite: nothing (the API runs the query itself there; its triggers are SQL).
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC_TEXT = "to_char(timezone('UTC', tasks.{0}), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

TASK_BY_ID = f"""
CREATE FUNCTION task_by_id(owner_id varchar, task_id uuid)
RETURNS TABLE (id uuid, version integer, json text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT tasks.id, tasks.version, CAST(json_build_object(
        'id', tasks.id,
        'user_id', tasks.user_id,
        'title', tasks.title,
        'description', tasks.description,
        'is_completed', tasks.is_completed,
        'completed_at', {UTC_TEXT.format("completed_at")},
        'created_at', {UTC_TEXT.format("created_at")},
        'updated_at', {UTC_TEXT.format("updated_at")}) AS TEXT)
    FROM tasks
    WHERE tasks.user_id = task_by_id.owner_id AND tasks.id = task_by_id.task_id;
END $$
"""


BUMP_REVISIONS = """
CREATE OR REPLACE FUNCTION bump_task_revisions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_revisions AS r (user_id, revision)
    SELECT user_id, nextval('task_revision_numbers')
    FROM (SELECT DISTINCT user_id FROM changed) AS distinct_users
    ON CONFLICT (user_id) DO UPDATE SET revision = EXCLUDED.revision;
    RETURN NULL;
END $$
"""

# 0004's, as it was (a migration cannot import another).
BUMP_REVISIONS_0004 = """
CREATE OR REPLACE FUNCTION bump_task_revisions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_task_revisions_of(ARRAY(SELECT user_id FROM changed));
    RETURN NULL;
END $$
"""


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TASK_BY_ID)
        op.execute(BUMP_REVISIONS)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(BUMP_REVISIONS_0004)
        op.execute("DROP FUNCTION task_by_id(varchar, uuid)")
