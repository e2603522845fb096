"""The rules of tasks and their queries, shared by the HTTP resources and the CLI

Each statement is one round trip (todo/roundtrip.py), and a request on one task is
one statement: a write is a single INSERT, UPDATE or DELETE whose WHERE holds the
ETag check, so the database decides races, and whose RETURNING gives the answer.
Lists are kept per worker (todo/pagecache.py) and served again while the user's
revision is unchanged: a list reads the revision, and on a miss its page, whose
statement also counts the matches, so `total` and the page come from one snapshot.
"""

import functools
import re
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from flask_smorest import abort

from todo import cursor, roundtrip
from todo.envelope import encode_json
from todo.extensions import db
from todo.models import Task, TaskRevision, UTCDateTime, utcnow
from todo.roundtrip import Statement
from todo.schemas import TASK_JSON_SQL, task_json

SORT_KEYS = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "title": Task.title_lower,
}

# The API's fields plus the title sort key, as plain rows (no ORM identity map).
LISTED_COLUMNS = (
    Task.id,
    Task.user_id,
    Task.title,
    Task.title_lower,
    Task.description,
    Task.is_completed,
    Task.completed_at,
    Task.created_at,
    Task.updated_at,
)
UPDATABLE = ("title", "description", "is_completed")


@dataclass(frozen=True)
class TaskDocument:
    """One task as the API answers it."""

    id: uuid.UUID
    json: str  # TaskSchema's JSON
    version: int  # the ETag


@dataclass(frozen=True)
class TaskPage:
    items_json: bytes  # the page's tasks as a JSON array, UTF-8
    count: int
    total: int
    limit: int
    next_cursor: str | None


def _on_postgresql(dialect_name: str | None = None) -> bool:
    return (dialect_name or db.engine.dialect.name) == "postgresql"


def _answer_columns(dialect_name: str) -> tuple:
    # PostgreSQL encodes the JSON itself; elsewhere task_json does.
    if _on_postgresql(dialect_name):
        return (Task.id, Task.version, TASK_JSON_SQL)
    return (Task.version, *LISTED_COLUMNS)


def _document(row, dialect_name: str) -> TaskDocument:
    """A row of _answer_columns(dialect_name), read with roundtrip.rows(..., plain=True)."""
    if _on_postgresql(dialect_name):
        task_id, version, json = row
        return TaskDocument(id=task_id, json=json, version=version)
    return TaskDocument(id=row.id, json=encode_json(task_json(row)), version=row.version)


def _this_task():
    return (Task.user_id == sa.bindparam("owner_id"), Task.id == sa.bindparam("task_id"))


@functools.cache
def select_one(dialect_name: str) -> Statement:
    """The one-task GET's statement (also sent by the benchmark's floor of a GET).

    On PostgreSQL, a call of task_by_id() (migration 0006), whose plan of
    select_one_inline the server keeps per connection: planning it anew was a
    quarter of the database's CPU per GET.
    """
    if not _on_postgresql(dialect_name):
        return select_one_inline(dialect_name)
    arguments = (
        sa.bindparam("owner_id", type_=Task.user_id.type),
        sa.bindparam("task_id", type_=Task.id.type),
    )
    found = sa.func.task_by_id(*arguments).table_valued("id", "version", "json", name="task")
    return Statement(sa.select(found.c.id, found.c.version, found.c.json))


@functools.cache
def select_one_inline(dialect_name: str) -> Statement:
    """The query of one task, as task_by_id() runs it on PostgreSQL."""
    return Statement(sa.select(*_answer_columns(dialect_name)).where(*_this_task()))


SELECT_VERSION = Statement(sa.select(Task.version).where(*_this_task()))
SELECT_REVISION = Statement(
    sa.select(TaskRevision.revision).where(TaskRevision.user_id == sa.bindparam("owner_id"))
)
INSERT_TASK = Statement(sa.insert(Task))


@functools.cache
def _update(dialect_name: str, fields: frozenset, conditional: bool) -> Statement:
    """UPDATE of `fields` that keeps updated_at and the version when nothing changes."""
    new = {name: sa.bindparam(f"new_{name}", type_=getattr(Task, name).type) for name in fields}
    clock = sa.bindparam("now", type_=UTCDateTime())
    # The clock was read before the row's lock was had: a write that read it later
    # may have committed first. Never before the row's updated_at, so a task's time
    # never goes back and created_at <= completed_at <= updated_at, whatever the order.
    now = sa.case((clock > Task.updated_at, clock), else_=Task.updated_at)
    values = {}
    if "title" in fields:
        values.update(title=new["title"], title_lower=sa.bindparam("new_title_lower"))
    if "description" in fields:
        values["description"] = new["description"]
    if "is_completed" in fields:
        # Completing a completed task keeps its completed_at.
        values["is_completed"] = new["is_completed"]
        values["completed_at"] = sa.case(
            (new["is_completed"], sa.func.coalesce(Task.completed_at, now)), else_=None
        )
    changed = sa.or_(*(getattr(Task, name).is_distinct_from(new[name]) for name in sorted(fields)))
    values["updated_at"] = sa.case((changed, now), else_=Task.updated_at)
    values["version"] = sa.case((changed, Task.version + 1), else_=Task.version)
    statement = sa.update(Task).where(*_this_task())
    if conditional:
        statement = statement.where(Task.version == sa.bindparam("expected_version"))
    return Statement(statement.values(values).returning(*_answer_columns(dialect_name)))


@functools.cache
def _delete(conditional: bool) -> Statement:
    statement = sa.delete(Task).where(*_this_task())
    if conditional:
        statement = statement.where(Task.version == sa.bindparam("expected_version"))
    return Statement(statement.returning(Task.id))


# The UUID's text as the API writes it (any case). uuid.UUID also takes braces,
# "urn:uuid:", no dashes or dashes anywhere: other URLs of one task.
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def task_key(task_id: str) -> uuid.UUID:
    """`task_id` as a UUID; 404 when it is not one (it cannot name a task)."""
    if not UUID_TEXT.fullmatch(task_id):
        abort(404, message="Task not found.")
    return uuid.UUID(task_id)


def get(user_id: str, task_id: str) -> TaskDocument:
    """The user's task `task_id`; 404 when it is not a UUID, missing, or someone else's."""
    dialect_name = db.engine.dialect.name
    params = {"owner_id": user_id, "task_id": task_key(task_id)}
    rows = roundtrip.rows(select_one(dialect_name), user_id, params, plain=True)
    if not rows:
        abort(404, message="Task not found.")
    return _document(rows[0], dialect_name)


def _expected_version(user_id: str, key: uuid.UUID, versions: frozenset[int] | None):
    """The version a conditional write must find (None: any).

    `versions` are the If-Match tags: None without If-Match or with `*`. With one
    tag the write itself checks it; with none or several, the current version is
    read first (412 when it is not among them).
    """
    if versions is None:
        return None
    if len(versions) == 1:
        return next(iter(versions))
    rows = roundtrip.rows(SELECT_VERSION, user_id, {"owner_id": user_id, "task_id": key})
    if not rows:
        abort(404, message="Task not found.")
    if rows[0].version not in versions:
        abort(412)
    return rows[0].version


def _missing_or_changed(user_id: str, key: uuid.UUID, expected) -> None:
    """After a write that matched no row: 412 if the task exists (its version moved
    on), else 404."""
    if expected is not None:
        if roundtrip.rows(SELECT_VERSION, user_id, {"owner_id": user_id, "task_id": key}):
            abort(412)
    abort(404, message="Task not found.")


def new_task(
    user_id: str, title: str, description: str | None = None, is_completed: bool = False, now=None
) -> Task:
    """A task ready to add to the session (not added, not committed)."""
    now = now or utcnow()
    return Task(
        id=uuid.uuid4(),
        user_id=user_id,
        title=title,
        title_lower=title.lower(),
        description=description,
        is_completed=is_completed,
        completed_at=now if is_completed else None,
        created_at=now,
        updated_at=now,
        version=1,
    )


def create(
    user_id: str, title: str, description: str | None = None, is_completed: bool = False
) -> TaskDocument:
    task = new_task(user_id, title, description, is_completed)
    values = {column.key: getattr(task, column.key) for column in Task.__table__.columns}
    roundtrip.rows(INSERT_TASK, user_id, values)
    return TaskDocument(
        id=task.id,
        json=encode_json(task_json(task)),
        version=task.version,
    )


def update(
    user_id: str, task_id: str, changes: dict, versions: frozenset[int] | None = None
) -> TaskDocument:
    """Apply `changes` (title, description, is_completed; absent keys are kept), if
    the task's version is one of `versions` (If-Match; None: any)."""
    key = task_key(task_id)
    expected = _expected_version(user_id, key, versions)
    fields = frozenset(name for name in UPDATABLE if name in changes)
    params = {f"new_{name}": changes[name] for name in fields}
    if "title" in fields:
        params["new_title_lower"] = changes["title"].lower()
    dialect_name = db.engine.dialect.name
    statement = _update(dialect_name, fields, expected is not None)
    params.update(owner_id=user_id, task_id=key, now=utcnow(), expected_version=expected)
    rows = roundtrip.rows(statement, user_id, params, plain=True)
    if not rows:
        _missing_or_changed(user_id, key, expected)
    return _document(rows[0], dialect_name)


def set_completed(
    user_id: str, task_id: str, is_completed: bool, versions: frozenset[int] | None = None
) -> TaskDocument:
    """Complete or reopen; completing a completed task keeps its completed_at."""
    return update(user_id, task_id, {"is_completed": is_completed}, versions)


def delete(user_id: str, task_id: str, versions: frozenset[int] | None = None) -> None:
    key = task_key(task_id)
    expected = _expected_version(user_id, key, versions)
    statement = _delete(expected is not None)
    params = {"owner_id": user_id, "task_id": key, "expected_version": expected}
    rows = roundtrip.rows(statement, user_id, params)
    if not rows:
        _missing_or_changed(user_id, key, expected)


def _filters(status: str, searching: bool) -> list:
    filters = [Task.user_id == sa.bindparam("owner_id")]
    if status == "pending":
        filters.append(sa.not_(Task.is_completed))
    elif status == "completed":
        filters.append(Task.is_completed)
    if searching:
        filters.append(Task.title_lower.contains(sa.bindparam("pattern"), escape="/"))
    return filters


def _like_escaped(text: str) -> str:
    # What `contains(..., autoescape=True)` does, which needs the value when the
    # statement is built; here the statement is built once for every value.
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


# The columns of a page's row, by position (rows are plain tuples, cheaper by the thousand).
SORT_VALUE, SORT_ID, TOTAL, JSON = range(4)


@functools.cache
def _page_statement(dialect_name: str, status: str, searching: bool, sort: str, paging: bool):
    """A list page's SELECT (limit + 1 rows: one more tells there is a next page).

    Each row starts with the sort value and the id (the cursor of the last row), then
    the number of all matches (`meta.total`: a subquery that the database runs once,
    in the page's snapshot), then the JSON (PostgreSQL) or the columns task_json reads.
    """
    sort_key = SORT_KEYS[sort.lstrip("-")]
    descending = sort.startswith("-")
    filters = _filters(status, searching)
    total = sa.select(sa.func.count()).select_from(Task).where(*filters).scalar_subquery()
    rest = (TASK_JSON_SQL,) if _on_postgresql(dialect_name) else LISTED_COLUMNS
    statement = sa.select(
        sort_key.label("sort_value"), Task.id.label("sort_id"), total.label("total"), *rest
    ).where(*filters)
    if paging:
        position = sa.tuple_(sort_key, Task.id)
        bound = sa.tuple_(
            sa.bindparam("after_value", type_=sort_key.type),
            sa.bindparam("after_id", type_=Task.id.type),
        )
        statement = statement.where(position < bound if descending else position > bound)
    order = (sort_key.desc(), Task.id.desc()) if descending else (sort_key, Task.id)
    return Statement(statement.order_by(*order).limit(sa.bindparam("row_limit")))


@functools.cache
def _count_statement(status: str, searching: bool) -> Statement:
    where = _filters(status, searching)
    return Statement(sa.select(sa.func.count().label("total")).select_from(Task).where(*where))


def list_page(
    user_id: str,
    *,
    status: str = "all",
    q: str | None = None,
    sort: str = "-created_at",
    limit: int = 100,
    after=None,
) -> TaskPage:
    """One keyset page: `after` is the (sort value, id) of the previous page's last task.

    The user's revision is read before the page, so a page kept with it is never
    older than it (todo/pagecache.py).
    """
    pages = current_app.extensions["todo.pages"]
    found = roundtrip.rows(SELECT_REVISION, user_id, {"owner_id": user_id})
    revision = found[0].revision if found else None  # None: no write yet, nothing kept
    key = (user_id, status, q, sort, limit, after)
    page = pages.get(key, revision) if revision is not None else None
    if page is None:
        page = _read_page(user_id, status=status, q=q, sort=sort, limit=limit, after=after)
        if revision is not None:
            pages.put(key, revision, page, len(page.items_json) + len(page.next_cursor or ""))
    return page


def _read_page(user_id, *, status, q, sort, limit, after) -> TaskPage:
    dialect_name = db.engine.dialect.name
    searching = bool(q)
    params = {"owner_id": user_id, "row_limit": limit + 1}
    if searching:
        params["pattern"] = _like_escaped(q.lower())
    if after is not None:
        params["after_value"], params["after_id"] = after
    statement = _page_statement(dialect_name, status, searching, sort, after is not None)
    rows = roundtrip.rows(statement, user_id, params, plain=True)
    rows, more = rows[:limit], len(rows) > limit
    if rows:
        total = rows[0][TOTAL]
    elif after is None:
        total = 0
    else:  # a page past the last match (its tasks were deleted since the cursor)
        total = roundtrip.rows(_count_statement(status, searching), user_id, params)[0].total
    next_cursor = cursor.encode(sort, rows[-1][SORT_VALUE], rows[-1][SORT_ID]) if more else None
    if _on_postgresql(dialect_name):
        items = ",".join([row[JSON] for row in rows])
    else:
        items = ",".join([encode_json(task_json(row)) for row in rows])
    return TaskPage(
        items_json=f"[{items}]".encode(),
        count=len(rows),
        total=total,
        limit=limit,
        next_cursor=next_cursor,
    )
