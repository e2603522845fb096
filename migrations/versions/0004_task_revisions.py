"""task_revisions: a number per user that every write to the user's tasks changes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Triggers on tasks set the user's revision to a new value in the transaction of
every INSERT, UPDATE and DELETE, whoever writes (the API, the CLI, psql). The
API's workers keep list pages in memory with the revision they were read at
(todo/pagecache.py): a page whose user's revision has not changed is still
exact. A value is never reused (SQLite: see 0005), even after the row is deleted
(purge-user): PostgreSQL takes it from a sequence; SQLite, whose writers are
serialized, from the largest one given so far (indexed) or the clock in
milliseconds, whichever is larger.

On PostgreSQL the table has the row-level security of tasks (migration 0003),
and one statement-level trigger per event, so a bulk insert of many users'
tasks (the seed) costs one upsert per user, not per row.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

USER = "user_id = current_setting('app.user_id', true)"

# A bulk loader (todo/seeding.py) that sends a statement per row defers the
# trigger for its statements (todo.defer_revisions, transaction-local) and calls
# bump_task_revisions_of() itself for the users it wrote, in the same transaction.
POSTGRESQL_TRIGGERS = (
    "CREATE SEQUENCE task_revision_numbers",
    """
CREATE FUNCTION bump_task_revisions_of(users text[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO task_revisions AS r (user_id, revision)
    SELECT user_id, nextval('task_revision_numbers')
    FROM (SELECT DISTINCT user_id FROM unnest(users) AS users(user_id)) AS distinct_users
    ON CONFLICT (user_id) DO UPDATE SET revision = EXCLUDED.revision
$$
""",
    """
CREATE FUNCTION bump_task_revisions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_task_revisions_of(ARRAY(SELECT user_id FROM changed));
    RETURN NULL;
END $$
""",
    *(
        f"CREATE TRIGGER tasks_revision_{event} AFTER {event.upper()} ON tasks"
        f" REFERENCING {row} TABLE AS changed FOR EACH STATEMENT"
        " WHEN (current_setting('todo.defer_revisions', true) IS DISTINCT FROM 'on')"
        " EXECUTE FUNCTION bump_task_revisions()"
        for event, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD"))
    ),
)

# Past the largest value, and at least the time in milliseconds. Not enough when
# purge-user deletes the row with the largest value while the values run ahead of
# the clock: 0005 replaces it with a counter.
SQLITE_BUMP = """
    INSERT INTO task_revisions (user_id, revision)
    VALUES ({row}.user_id, max(
        (SELECT coalesce(max(revision), 0) + 1 FROM task_revisions),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)))
    ON CONFLICT (user_id) DO UPDATE SET revision = excluded.revision;
"""


def upgrade():
    op.create_table(
        "task_revisions",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_task_revisions")),
    )
    op.create_index("ix_task_revisions_revision", "task_revisions", ["revision"])
    if op.get_bind().dialect.name != "postgresql":
        for event, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD")):
            op.execute(
                f"CREATE TRIGGER tasks_revision_{event} AFTER {event.upper()} ON tasks"
                f" BEGIN {SQLITE_BUMP.format(row=row)} END"
            )
        op.execute(
            "INSERT INTO task_revisions (user_id, revision)"
            " SELECT user_id, row_number() OVER (ORDER BY user_id)"
            " FROM (SELECT DISTINCT user_id FROM tasks)"
        )
        return

    for statement in POSTGRESQL_TRIGGERS:
        op.execute(statement)
    op.execute("ALTER TABLE task_revisions ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE task_revisions FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY task_revisions_own_rows ON task_revisions"
        f" USING ({USER}) WITH CHECK ({USER})"
    )
    op.execute(
        """
        DO $$
        DECLARE operator text := current_database() || '_operator';
        BEGIN
            EXECUTE format(
                'GRANT SELECT, INSERT, UPDATE, DELETE ON task_revisions TO %I', operator);
            EXECUTE format('GRANT USAGE ON SEQUENCE task_revision_numbers TO %I', operator);
            EXECUTE format(
                'CREATE POLICY task_revisions_operator ON task_revisions TO %I'
                ' USING (true) WITH CHECK (true)', operator);
            -- The users who already have tasks, seen through the operator role
            -- (the owner is bound by the policies too).
            PERFORM set_config('role', operator, true);
            INSERT INTO task_revisions (user_id, revision)
            SELECT user_id, nextval('task_revision_numbers')
            FROM (SELECT DISTINCT user_id FROM tasks) AS users;
            PERFORM set_config('role', 'none', true);
        END $$
        """
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER tasks_revision_{event} ON tasks")
        op.execute("DROP FUNCTION bump_task_revisions()")
        op.execute("DROP FUNCTION bump_task_revisions_of(text[])")
        op.execute("DROP SEQUENCE task_revision_numbers")
    else:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER tasks_revision_{event}")
    op.drop_index("ix_task_revisions_revision", "task_revisions")
    op.drop_table("task_revisions")
