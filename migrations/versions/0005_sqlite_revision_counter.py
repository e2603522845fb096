"""SQLite: revisions from a one-row counter, never reused after purge-user

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

On SQLite, 0004's triggers took the largest revision in task_revisions + 1 (or the
clock in milliseconds). When writes outpace one per millisecond the revisions run
ahead of the clock; purge-user then deletes the row with the largest value M, the
next write gets M again, and a worker's page kept at M is served again. The
triggers now take the next value from task_revision_counter, which no delete
lowers (still at least the clock: a recreated database file stays ahead of the
pages kept by running workers). Not a model, like PostgreSQL's sequence:
migrations/env.py keeps it out of `flask db check`. PostgreSQL: nothing changes.
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

EVENTS = (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD"))

CLOCK_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

SQLITE_BUMP = f"""
    UPDATE task_revision_counter SET value = max(value + 1, {CLOCK_MS});
    INSERT INTO task_revisions (user_id, revision)
    VALUES ({{row}}.user_id, (SELECT value FROM task_revision_counter))
    ON CONFLICT (user_id) DO UPDATE SET revision = excluded.revision;
"""

# 0004's, as it was (a migration cannot import another).
SQLITE_BUMP_0004 = """
    INSERT INTO task_revisions (user_id, revision)
    VALUES ({row}.user_id, max(
        (SELECT coalesce(max(revision), 0) + 1 FROM task_revisions),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)))
    ON CONFLICT (user_id) DO UPDATE SET revision = excluded.revision;
"""


def _replace_triggers(bump):
    for event, row in EVENTS:
        op.execute(f"DROP TRIGGER tasks_revision_{event}")
        op.execute(
            f"CREATE TRIGGER tasks_revision_{event} AFTER {event.upper()} ON tasks"
            f" BEGIN {bump.format(row=row)} END"
        )


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        return
    op.execute("CREATE TABLE task_revision_counter (value BIGINT NOT NULL)")
    op.execute(
        "INSERT INTO task_revision_counter (value)"
        " SELECT coalesce(max(revision), 0) FROM task_revisions"
    )
    _replace_triggers(SQLITE_BUMP)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        return
    _replace_triggers(SQLITE_BUMP_0004)
    op.execute("DROP TABLE task_revision_counter")
