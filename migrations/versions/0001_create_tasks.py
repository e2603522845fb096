"""create tasks

Revision ID: 0001
Revises:
Create Date: 2026-11-28

"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tasks",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column(
            "title_lower",
            sa.String(length=1000).with_variant(
                sa.String(length=1000, collation="C"), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_completed", sa.Boolean(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "(is_completed AND completed_at IS NOT NULL)"
            " OR (NOT is_completed AND completed_at IS NULL)",
            name=op.f("ck_tasks_completed_at_iff_completed"),
        ),
        sa.CheckConstraint("length(title) BETWEEN 1 AND 500", name=op.f("ck_tasks_title_length")),
        sa.PrimaryKeyConstraint("user_id", "id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_user_created", "tasks", ["user_id", "created_at", "id"])
    op.create_index("ix_tasks_user_updated", "tasks", ["user_id", "updated_at", "id"])
    op.create_index("ix_tasks_user_title", "tasks", ["user_id", "title_lower", "id"])


def downgrade():
    op.drop_table("tasks")
