"""row-level security on tasks and idempotency_keys (PostgreSQL)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

A row is visible and writable when its user_id is the transaction's app.user_id
(set by todo/rls.py at the start of every transaction of a request), or when the
transaction set app.bypass_rls to 'on' (todo.rls.bypass(), for operator commands).
FORCE binds the tables' owner too; only superusers and BYPASSRLS roles escape it,
so the application must not connect as one. SQLite has no RLS: nothing to do.
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("tasks", "idempotency_keys")
USER = "user_id = current_setting('app.user_id', true)"
BYPASS = "current_setting('app.bypass_rls', true) = 'on'"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_own_rows ON {table} USING ({USER}) WITH CHECK ({USER})")
        op.execute(
            f"CREATE POLICY {table}_operator_bypass ON {table}"
            f" USING ({BYPASS}) WITH CHECK ({BYPASS})"
        )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP POLICY IF EXISTS {table}_operator_bypass ON {table}")
        op.execute(f"DROP POLICY IF EXISTS {table}_own_rows ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
