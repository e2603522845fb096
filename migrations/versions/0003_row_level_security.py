"""row-level security on tasks and idempotency_keys (PostgreSQL)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

A row is visible and writable when its user_id is the transaction's app.user_id
(set by todo/rls.py at the start of every transaction). FORCE binds the tables'
owner too; superusers and BYPASSRLS roles escape it, so the application must not
connect as one.

Operator commands that act on every user (todo.rls.bypass) switch, for their
transaction only, to the role `<database>_operator`, which a second policy admits
to every row. That policy names its role: for the application's own role only the
per-user policy applies, so the planner sees a plain `user_id = ...` and keeps
using the user-leading indexes in order (an OR of both in one policy made it
misjudge a user's row count and sort the user's rows).

The role is created here when missing (this needs CREATEROLE; otherwise create it
beforehand and grant it to the application's role without inheritance). The grant
lets the application SET ROLE to it but not inherit it, or the second policy
would apply to the application too: `WITH INHERIT FALSE` on PostgreSQL 16 and
later, the NOINHERIT attribute on the migrating role before. A superuser that
migrates is left as it is (it needs no grant, and NOINHERIT would change a role
that other databases share): the application's role is then granted the operator
role by an administrator, as for a role without CREATEROLE. SQLite has no RLS.
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("tasks", "idempotency_keys")
USER = "user_id = current_setting('app.user_id', true)"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_own_rows ON {table} USING ({USER}) WITH CHECK ({USER})")
    op.execute(
        f"""
        DO $$
        DECLARE
            operator text := current_database() || '_operator';
            tables text[] := ARRAY{list(TABLES)!r};
            name text;
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = operator) THEN
                EXECUTE format('CREATE ROLE %I NOLOGIN', operator);
            END IF;
            -- Membership to SET ROLE, but not inheritance: a policy applies to the
            -- members that inherit its role, and the application must not. A role
            -- without CREATEROLE cannot grant it: an administrator did, beforehand.
            IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                -- A superuser may SET ROLE to any role and ignores row security
                -- anyway: its grants and attributes (a shared role's) stay as they are.
                NULL;
            ELSIF pg_has_role(current_user, operator, 'MEMBER')
                    AND NOT pg_has_role(current_user, operator, 'USAGE')
                    -- 16 and later: the grant must also allow SET ROLE (WITH SET TRUE)
                    AND (CASE WHEN current_setting('server_version_num')::int >= 160000
                        THEN pg_has_role(current_user, operator, 'SET') ELSE true END) THEN
                NULL;
            ELSIF current_setting('server_version_num')::int >= 160000 THEN
                EXECUTE format('GRANT %I TO %I WITH INHERIT FALSE', operator, current_user);
            ELSE
                -- NOINHERIT also drops what the database owner inherits from
                -- pg_database_owner, the owner of schema public: keep its use.
                EXECUTE format('GRANT USAGE, CREATE ON SCHEMA public TO %I', current_user);
                EXECUTE format('ALTER ROLE %I NOINHERIT', current_user);
                EXECUTE format('GRANT %I TO %I', operator, current_user);
            END IF;
            FOREACH name IN ARRAY tables LOOP
                EXECUTE format(
                    'GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', name, operator);
                EXECUTE format(
                    'CREATE POLICY %I ON %I TO %I USING (true) WITH CHECK (true)',
                    name || '_operator', name, operator);
            END LOOP;
        END $$
        """
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP POLICY IF EXISTS {table}_operator ON {table}")
        op.execute(f"DROP POLICY IF EXISTS {table}_own_rows ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(
        f"""
        DO $$
        DECLARE operator text := current_database() || '_operator';
        BEGIN
            EXECUTE format('REVOKE ALL ON {", ".join(TABLES)} FROM %I', operator);
        END $$
        """
    )
