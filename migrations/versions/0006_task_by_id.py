"""task_by_id(): the one-task GET's query, planned once per connection (PostgreSQL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

The API sends its statements in the simple protocol (todo/roundtrip.py), so
PostgreSQL parses and plans each one anew: for the one-task GET, planning was a
third of the database's CPU per request (about 50 of 210 us on a 2-core machine).
A PL/pgSQL function keeps the plan of its query for the life of the server
connection, which also holds behind PgBouncer in transaction mode (a plan, unlike
a prepared statement, is the server's own state). The function runs with the
caller's rights, so the row-level security of 0003 applies as to the query itself.

The query is todo.tasks.select_one_inline("postgresql") as it was written here,
the task's JSON included: tests/test_storage.py holds the two equal, and a change
to the task's JSON needs a migration that replaces this function.
SQLite: nothing (the API runs the query itself there).
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


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TASK_BY_ID)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION task_by_id(varchar, uuid)")
