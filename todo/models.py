"""Database models: the tasks table, its revisions and its idempotency records"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TITLE_MAX = 500
DESCRIPTION_MAX = 10_000
USER_ID_MAX = 255
VERSION_MAX = 2**31 - 1  # the version column is an INTEGER


def unstorable(text: str) -> str | None:
    """Why a backend cannot store `text` ("nul" or "surrogate"), else None: PostgreSQL
    refuses NUL characters, and text that is not valid UTF-8 (a lone surrogate)."""
    if "\x00" in text:
        return "nul"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "surrogate"
    return None


def user_id_problem(user_id: str) -> str | None:
    """Why `user_id` cannot be a user's id (as a phrase after "must be"), else None.
    Bytes that are not UTF-8 reach Python as lone surrogates: no backend stores those."""
    if not 1 <= len(user_id) <= USER_ID_MAX:
        return f"1 to {USER_ID_MAX} characters"
    if unstorable(user_id):
        return "UTF-8 text without NUL characters"
    return None


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator):
    """An aware UTC datetime on every backend.

    SQLite drops the offset of an aware value without converting it, so values are
    converted to UTC before binding and UTC is re-attached on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Title order is byte order of the lowercased title on both backends: PostgreSQL's
# default collation depends on the server's locale, SQLite's is binary. Lowercasing
# can lengthen a string (str.lower("İ") is two code points), hence twice TITLE_MAX.
TITLE_LOWER_MAX = 2 * TITLE_MAX
CaseFoldedTitle = sa.String(TITLE_LOWER_MAX).with_variant(
    sa.String(TITLE_LOWER_MAX, collation="C"), "postgresql"
)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Task(Base):
    __tablename__ = "tasks"

    # The key leads with user_id: every query is for one user, and the table can be
    # distributed by user without changing a key.
    user_id: Mapped[str] = mapped_column(sa.String(USER_ID_MAX), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(sa.String(TITLE_MAX))
    # lower(title) computed by the application, so that sorting and searching agree
    # on every backend whatever its locale or Unicode support.
    title_lower: Mapped[str] = mapped_column(CaseFoldedTitle)
    description: Mapped[str | None] = mapped_column(sa.Text)
    is_completed: Mapped[bool] = mapped_column(default=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped by every UPDATE, which also checks the value it read (compare-and-set):
    # the ETag, and what makes two writers with the same ETag fail one of them.
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint(
            "(is_completed AND completed_at IS NOT NULL)"
            " OR (NOT is_completed AND completed_at IS NULL)",
            name="completed_at_iff_completed",
        ),
        sa.CheckConstraint(f"length(title) BETWEEN 1 AND {TITLE_MAX}", name="title_length"),
        sa.Index("ix_tasks_user_created", "user_id", "created_at", "id"),
        sa.Index("ix_tasks_user_updated", "user_id", "updated_at", "id"),
        sa.Index("ix_tasks_user_title", "user_id", "title_lower", "id"),
    )

    def __repr__(self) -> str:
        return f"<Task {self.id} of {self.user_id!r}>"


class TaskRevision(Base):
    """A value that changes with every write to a user's tasks, set by the triggers
    of migration 0004: what the list pages kept in memory are checked against."""

    __tablename__ = "task_revisions"

    user_id: Mapped[str] = mapped_column(sa.String(USER_ID_MAX), primary_key=True)
    revision: Mapped[int] = mapped_column(sa.BigInteger, index=True)

    def __repr__(self) -> str:
        return f"<TaskRevision {self.revision} of {self.user_id!r}>"


IDEMPOTENCY_KEY_MAX = 255


class IdempotencyKey(Base):
    """The first successful answer to a POST that carried an `Idempotency-Key`.

    The row is inserted in the transaction that creates the task, so the primary
    key (user_id, key) decides which of several concurrent retries creates it; the
    others wait for that transaction and replay what it stored.
    """

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(sa.String(USER_ID_MAX), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(IDEMPOTENCY_KEY_MAX), primary_key=True)
    # sha256 of the canonical JSON body: a reuse of the key with another body is 409.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    task_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    status_code: Mapped[int]
    response_body: Mapped[dict | None] = mapped_column(sa.JSON)
    response_headers: Mapped[dict | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_idempotency_keys_created_at", "created_at"),)

    def __repr__(self) -> str:
        return f"<IdempotencyKey {self.key!r} of {self.user_id!r}>"
