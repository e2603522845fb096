"""Bulk creation of realistic tasks, for demos and load tests (`flask tasks seed`)

Rows go in as batched multi-row INSERTs on the engine's own connection, all in one
transaction: an interrupted seed writes nothing.
"""

import random
import string
import uuid
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from todo import rls
from todo.extensions import db
from todo.models import Task

BATCH_SIZE = 5000
MAX_TASKS = 50_000_000  # in one run: one transaction (all or nothing)
DEFER_REVISIONS = sa.text("SELECT set_config('todo.defer_revisions', :deferred, true)")
BUMP_REVISIONS = sa.text("SELECT bump_task_revisions_of(CAST(:users AS text[]))")
HISTORY = timedelta(days=365)
ID_ALPHABET = string.ascii_letters + string.digits

VERBS = (
    "Buy",
    "Call",
    "Email",
    "Fix",
    "Book",
    "Renew",
    "Review",
    "Plan",
    "Clean",
    "Pay",
    "Schedule",
    "Order",
    "Return",
    "Write",
    "Update",
    "Check",
    "Cancel",
    "Prepare",
    "Pick up",
    "Send",
    "Read",
    "Organise",
    "Back up",
    "Replace",
    "Ask about",
)
OBJECTS = (
    "milk",
    "the plumber",
    "Mum",
    "the dentist appointment",
    "flights to Lisbon",
    "passport",
    "pull request #{n}",
    "quarterly budget",
    "garage",
    "electricity bill",
    "car service",
    "birthday present for Sam",
    "library books",
    "the tax return",
    "slides for Monday's meeting",
    "insurance renewal",
    "team offsite",
    "bike tyres",
    "photos from the holiday",
    "the landlord",
    "gym membership",
    "invoice {n}",
    "kitchen tap",
    "Chapter {n} of the report",
    "groceries for the weekend",
    "parcel at the post office",
    "laptop backup",
    "smoke alarm batteries",
    "Q{q} OKRs",
    "vet appointment for Luna",
    "conference tickets",
    "API docs",
)
SUFFIXES = (
    "",
    "",
    "",
    "",
    "",
    " before Friday",
    " (urgent)",
    " this week",
    " tomorrow",
    " — again",
    " after work",
    " if it rains",
    " for the Berlin trip",
)
DESCRIPTIONS = (
    "Don't forget the receipt.",
    "Ask for the cheaper option first.",
    "Check the shared drive for last year's version.",
    "They close at 6pm on weekdays.",
    "Reference number is in the email from {month}.",
    "Needs two signatures.",
    "Sam said the blue one, not the green one.",
    "Compare at least three quotes.",
    "Blocked until the supplier answers.",
    "Half an hour, tops.",
    "Bring ID and the confirmation letter.",
    "Budget: {n} EUR.",
)
MONTHS = ("January", "March", "May", "July", "September", "November")


def random_user_id(rng: random.Random) -> str:
    """An id shaped like the identity provider's: 32 random letters and digits."""
    return "".join(rng.choices(ID_ALPHABET, k=32))


def _title(rng: random.Random) -> str:
    title = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(SUFFIXES)}"
    return title.format(n=rng.randint(2, 999), q=rng.randint(1, 4))


def _description(rng: random.Random) -> str | None:
    if rng.random() < 0.4:
        return None
    sentences = rng.sample(DESCRIPTIONS, rng.randint(1, 3))
    return " ".join(sentences).format(n=rng.randint(20, 900), month=rng.choice(MONTHS))


def fake_task(rng: random.Random, user_id: str, completed_ratio: float, now: datetime) -> dict:
    """One row of the tasks table: every column, consistent with the table's rules."""
    created_at = now - HISTORY * rng.random()
    # Half the tasks were never edited; the others at some moment after creation.
    edited = rng.random() < 0.5
    updated_at = created_at + (now - created_at) * rng.random() if edited else created_at
    is_completed = rng.random() < completed_ratio
    completed_at = None
    if is_completed:
        completed_at = created_at + (updated_at - created_at) * rng.random()
        if rng.random() < 0.7:  # completing it was usually the last change
            updated_at = completed_at
    title = _title(rng)
    return {
        "user_id": user_id,
        "id": uuid.uuid4(),
        "title": title,
        "title_lower": title.lower(),
        "description": _description(rng),
        "is_completed": is_completed,
        "completed_at": completed_at,
        "created_at": created_at,
        "updated_at": updated_at,
        "version": 1,
    }


COLUMNS = tuple(column.name for column in Task.__table__.columns)


@contextmanager
def revisions_bumped_after(connection: sa.Connection, user_ids: Iterable[str]):
    """Write tasks of `user_ids` in the block, and give those users a new revision
    once, after it, in the same transaction.

    psycopg's executemany sends one INSERT per row (pipelined), and the revision
    trigger of migration 0004 would run once per statement: on PostgreSQL it is
    deferred for the block. (SQLite's trigger runs per row, whatever the batch.)
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(DEFER_REVISIONS, {"deferred": "on"})
    yield
    connection.execute(DEFER_REVISIONS, {"deferred": "off"})
    connection.execute(BUMP_REVISIONS, {"users": sorted(set(user_ids))})


def insert_rows(connection: sa.Connection, rows: list[dict]) -> None:
    """Insert whole task rows on `connection`, inside its transaction.

    (COPY would be faster, but PostgreSQL refuses it on tables under row-level
    security.)
    """
    if not rows:
        return
    with revisions_bumped_after(connection, (row["user_id"] for row in rows)):
        connection.execute(sa.insert(Task.__table__), rows)


def seed(
    user_ids: Iterable[str],
    tasks_per_user: int,
    completed_ratio: float = 0.3,
    rng: random.Random | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add `tasks_per_user` new tasks to each user, in one transaction; returns the count."""
    rng = rng or random.Random()
    now = datetime.now(UTC)
    count = 0
    batch: list[dict] = []
    with db.engine.begin() as connection:
        rls.apply(connection)
        for user_id in user_ids:
            for _ in range(tasks_per_user):
                batch.append(fake_task(rng, user_id, completed_ratio, now))
                if len(batch) >= BATCH_SIZE:
                    insert_rows(connection, batch)
                    count += len(batch)
                    if progress:
                        progress(len(batch))
                    batch = []
        insert_rows(connection, batch)
        count += len(batch)
        if progress and batch:
            progress(len(batch))
    return count
