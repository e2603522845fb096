"""create idempotency_keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.JSON(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    # `flask tasks expire-idempotency-keys` deletes by age.
    with op.batch_alter_table("idempotency_keys") as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"])


def downgrade():
    with op.batch_alter_table("idempotency_keys") as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created_at")
    op.drop_table("idempotency_keys")
