"""The rules of tasks and their queries, shared by the HTTP resources and the CLI"""

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from flask_smorest import abort

from todo import cursor
from todo.envelope import COMPACT
from todo.extensions import db
from todo.models import Task, utcnow
from todo.schemas import TASK_JSON_SQL, task_json

SORT_KEYS = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "title": Task.title_lower,
}


# What a list reads: the API's fields plus the title sort key, as plain rows
# (no ORM identity map; lists are read-only).
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


@dataclass(frozen=True)
class TaskPage:
    items_json: str  # the page's tasks as a JSON array
    count: int
    total: int
    limit: int
    next_cursor: str | None


def get_or_404(user_id: str, task_id: str) -> Task:
    """The user's task `task_id`; 404 when it is not a UUID, missing, or someone else's."""
    try:
        key = uuid.UUID(task_id)
    except ValueError:
        abort(404, message="Task not found.")
    task = db.session.get(Task, (user_id, key))
    if task is None:
        abort(404, message="Task not found.")
    return task


def _set_completed(task: Task, is_completed: bool, now) -> None:
    if is_completed and not task.is_completed:
        task.completed_at = now
    elif not is_completed:
        task.completed_at = None
    task.is_completed = is_completed


def new_task(
    user_id: str, title: str, description: str | None = None, is_completed: bool = False, now=None
) -> Task:
    """A task ready to add to the session (not added, not committed)."""
    now = now or utcnow()
    task = Task(
        id=uuid.uuid4(),
        user_id=user_id,
        title=title,
        title_lower=title.lower(),
        description=description,
        is_completed=False,
        completed_at=None,
        created_at=now,
        updated_at=now,
    )
    _set_completed(task, is_completed, now)
    return task


def create(
    user_id: str, title: str, description: str | None = None, is_completed: bool = False
) -> Task:
    task = new_task(user_id, title, description, is_completed)
    db.session.add(task)
    db.session.commit()
    return task


def update(task: Task, changes: dict) -> Task:
    """Apply `changes` (title, description, is_completed; absent keys are kept)."""
    now = utcnow()
    if "title" in changes:
        task.title = changes["title"]
        task.title_lower = task.title.lower()
    if "description" in changes:
        task.description = changes["description"]
    if "is_completed" in changes:
        _set_completed(task, changes["is_completed"], now)
    if db.session.is_modified(task):
        task.updated_at = now
    db.session.commit()
    return task


def set_completed(task: Task, is_completed: bool) -> Task:
    """Complete or reopen; completing a completed task keeps its completed_at."""
    return update(task, {"is_completed": is_completed})


def delete(task: Task) -> None:
    db.session.delete(task)
    db.session.commit()


def _filters(user_id: str, status: str, q: str | None) -> list:
    filters = [Task.user_id == user_id]
    if status == "pending":
        filters.append(sa.not_(Task.is_completed))
    elif status == "completed":
        filters.append(Task.is_completed)
    if q:
        filters.append(Task.title_lower.contains(q.lower(), autoescape=True))
    return filters


def list_page(
    user_id: str,
    status: str = "all",
    q: str | None = None,
    sort: str = "-created_at",
    limit: int = 100,
    after=None,
) -> TaskPage:
    """One keyset page: `after` is the (sort value, id) of the previous page's last task."""
    filters = _filters(user_id, status, q)
    sort_key = SORT_KEYS[sort.lstrip("-")]
    descending = sort.startswith("-")
    on_postgresql = db.engine.dialect.name == "postgresql"
    columns = (sort_key, Task.id, TASK_JSON_SQL) if on_postgresql else LISTED_COLUMNS
    statement = sa.select(*columns).where(*filters)
    if after is not None:
        position = sa.tuple_(sort_key, Task.id)
        bound = sa.tuple_(sa.literal(after[0], sort_key.type), sa.literal(after[1], Task.id.type))
        statement = statement.where(position < bound if descending else position > bound)
    order = (sort_key.desc(), Task.id.desc()) if descending else (sort_key, Task.id)
    rows = db.session.execute(statement.order_by(*order).limit(limit + 1)).all()
    rows, more = rows[:limit], len(rows) > limit
    if after is None and not more:
        total = len(rows)  # the first page holds every match: nothing left to count
    else:
        total = db.session.scalar(sa.select(sa.func.count()).select_from(Task).where(*filters))
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = cursor.encode(sort, getattr(last, sort_key.key), last.id)
    if on_postgresql:
        items_json = "[" + ",".join(row.json for row in rows) + "]"
    else:
        items_json = current_app.json.dumps([task_json(row) for row in rows], separators=COMPACT)
    return TaskPage(
        items_json=items_json, count=len(rows), total=total, limit=limit, next_cursor=next_cursor
    )
