"""One user's tasks out to JSON Lines and back in (`flask tasks export` / `import`)

A line is one task exactly as the API returns it (the eight fields). Import checks
every line with the API's own create schema plus the id and the times, and writes
all the tasks in one transaction, or none.
"""

import itertools
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import TextIO

import marshmallow as ma
import sqlalchemy as sa
from marshmallow import fields

from todo import files, rls, seeding
from todo.admin import OperatorError
from todo.extensions import db
from todo.models import Task
from todo.schemas import StrictBoolean, TaskCreateSchema, TaskSchema

MAX_REPORTED = 20
BATCH_SIZE = 1000  # rows inserted at a time, and so held in memory
# What errors="surrogateescape" makes of the bytes that are not UTF-8: read so, a
# file can be reported by the line that holds them, not the buffer that did.
NOT_UTF_8 = re.compile("[\udc80-\udcff]")
# Far above the longest task line (10,500 characters of text, each escaped as up to
# 12): a longer line is reported without being held whole (a file with no newline).
MAX_LINE_CHARS = 1_000_000
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # what ends or bends a line


class UTCTime(fields.AwareDateTime):
    """A time with a zone, loaded in UTC, in the years that the API can show."""

    default_error_messages = {"range": "Must be in the years 1000 to 9999 in UTC."}

    def _deserialize(self, value, attr, data, **kwargs):
        time = super()._deserialize(value, attr, data, **kwargs)
        try:
            time = time.astimezone(UTC)
        except OverflowError:  # past 9999-12-31 or before 0001-01-01 once in UTC
            raise self.make_error("range") from None
        if time.year < 1000:  # the API's times have four-digit years
            raise self.make_error("range")
        return time


class TaskImportSchema(TaskCreateSchema):
    """A line of an export: the create fields, validated as the API does, plus the rest."""

    id = fields.UUID(required=True)
    user_id = fields.String(load_only=True)  # the owner in the file; --user-id decides
    is_completed = StrictBoolean(required=True)
    completed_at = UTCTime(required=True, allow_none=True)
    created_at = UTCTime(required=True)
    updated_at = UTCTime(required=True)

    @ma.post_load
    def drop_read_only(self, data, **kwargs):  # the API drops them; an import keeps them
        data.pop("user_id", None)
        return data

    @ma.validates_schema
    def consistent(self, data, **kwargs):
        if data.get("is_completed") is not None and "completed_at" in data:
            if data["is_completed"] != (data["completed_at"] is not None):
                raise ma.ValidationError(
                    "Must be set exactly when is_completed is true.", "completed_at"
                )
        if {"created_at", "updated_at"} <= data.keys():
            if data["updated_at"] < data["created_at"]:
                raise ma.ValidationError("Must not be before created_at.", "updated_at")
            # The API completes a task at an update: never outside the two.
            completed_at = data.get("completed_at")
            if completed_at and not data["created_at"] <= completed_at <= data["updated_at"]:
                raise ma.ValidationError(
                    "Must be between created_at and updated_at.", "completed_at"
                )


class BadLines(OperatorError):
    """Some lines of an import are invalid; `errors` holds (line number, message)."""

    def __init__(self, errors: list[tuple[int, str]], total: int):
        super().__init__(f"{total} bad line(s): nothing imported")
        self.errors = errors
        self.total = total


def _flatten(messages, prefix="") -> list[str]:
    if isinstance(messages, dict):
        return [
            item
            for key, value in messages.items()
            for item in _flatten(value, f"{prefix}{key}: " if key != "_schema" else prefix)
        ]
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [prefix + " ".join(messages)]
    return [f"{prefix}{messages}"]


def export_lines(user_id: str) -> Iterator[str]:
    """The user's tasks as JSON lines, oldest first, streamed from the database."""
    schema = TaskSchema()
    statement = (
        sa.select(Task)
        .where(Task.user_id == user_id)
        .order_by(Task.created_at, Task.id)
        .execution_options(yield_per=1000)
    )
    for task in db.session.scalars(statement):
        yield json.dumps(schema.dump(task), ensure_ascii=False)


def export_to_file(user_id: str, path: str) -> int:
    """Write the export to `path` (todo/files.py: replaced only once complete);
    returns the task count."""
    count = 0
    with files.replaced_when_complete(path) as output:
        for line in export_lines(user_id):
            output.write(line + "\n")
            count += 1
    return count


def imported_version() -> int:
    """The first version (ETag) of an imported task: random, from 2**24 to 2**30 + 2**24.

    The task may have existed before under its id (deleted, purged, moved back); at
    version 1 its new content would have an ETag that clients hold for the old one
    (a 304 for a stale copy, an If-Match that passes). No task updated through the
    API reaches 2**24, two imports of one id meet with a chance of about one in 2**30
    per update between them, and over 10**9 updates remain below VERSION_MAX.
    """
    return 2**24 + secrets.randbelow(2**30)


class LineErrors:
    """The bad lines of an import: the first MAX_REPORTED (line number, message), and
    how many in all."""

    def __init__(self):
        self.reported: list[tuple[int, str]] = []
        self.total = 0

    def add(self, number: int, message: str) -> None:
        self.total += 1
        if len(self.reported) < MAX_REPORTED:
            # One line each: a field name from the file may hold a newline.
            message = CONTROL.sub(lambda match: repr(match[0])[1:-1], message)
            self.reported.append((number, message))


def bounded_lines(stream: TextIO, limit: int = MAX_LINE_CHARS) -> Iterator[str]:
    """The lines of `stream`; one longer than `limit` characters is cut to limit + 1
    (task_rows reports it) and the rest of it read past, never held."""
    while line := stream.readline(limit + 1):
        if len(line) > limit and not line.endswith("\n"):
            while (rest := stream.readline(limit)) and not rest.endswith("\n"):
                pass
        yield line


def task_rows(lines: Iterable[str], user_id: str, new_ids: bool, bad: LineErrors) -> Iterator[dict]:
    """The task row of each good line (of text decoded as NOT_UTF_8 says), as the
    lines are read; each bad line goes to `bad` instead."""
    schema = TaskImportSchema()
    # The one record that grows with the file: an id as an int and a line number.
    first_line_of: dict[int, int] = {}
    for number, line in enumerate(lines, start=1):
        if NOT_UTF_8.search(line):
            raise OperatorError(f"line {number} is not UTF-8 text")
        # First: a line cut by bounded_lines may start with a million spaces.
        if len(line.rstrip("\r\n")) > MAX_LINE_CHARS:
            bad.add(number, f"longer than {MAX_LINE_CHARS:,} characters (no task is)")
            continue
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            bad.add(number, f"not JSON ({error})")
            continue
        except RecursionError:
            bad.add(number, "not JSON (nested too deeply)")
            continue
        except ValueError:  # an integer longer than Python converts
            bad.add(number, "not JSON (a number with too many digits)")
            continue
        if not isinstance(data, dict):
            bad.add(number, "not a JSON object")
            continue
        try:
            task = schema.load(data)
        except ma.ValidationError as error:
            bad.add(number, "; ".join(_flatten(error.messages)))
            continue
        if not new_ids:
            first = first_line_of.setdefault(task["id"].int, number)
            if first != number:
                bad.add(number, f"id {task['id']} repeats line {first}")
                continue
        yield {
            **task,
            "id": uuid.uuid4() if new_ids else task["id"],
            "user_id": user_id,
            "title_lower": task["title"].lower(),
            "version": imported_version(),
        }


def batches(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """itertools.batched, which is Python 3.12's (3.11 is supported), as lists."""
    rows = iter(rows)
    while batch := list(itertools.islice(rows, size)):
        yield batch


class ImportFailed(Exception):
    """Internal: a batch cannot go in (after a bad line, or an id the user has), so
    the import has failed; raised to end its transaction at once."""

    def __init__(self, batch: list[dict], error: sa.exc.IntegrityError | None = None):
        super().__init__()
        self.batch = batch
        self.error = error


def existing_ids(user_id: str, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    with db.engine.begin() as connection:
        rls.apply(connection)
        return connection.scalars(
            sa.select(Task.id).where(Task.user_id == user_id, Task.id.in_(ids))
        ).all()


def import_lines(lines: Iterable[str], user_id: str, new_ids: bool = False) -> int:
    """Check every line and add its task to `user_id`, all in one transaction; returns
    the count. BadLines lists the bad lines; OperatorError says why else nothing
    was imported (text that is not UTF-8, no tasks, ids the user already has).

    Rows go in by BATCH_SIZE as the lines are read, so that memory holds a batch,
    not the file. At the first bad line or existing id the transaction is rolled
    back, and the rest of the lines only checked: to report every bad line, or
    else to count the existing ids. (The primary key finds an existing id as the
    batch goes in; a SELECT of each batch's ids first would be planned on
    statistics that know nothing of the rows written earlier in the transaction,
    and on PostgreSQL read all of them, each time.)
    """
    bad = LineErrors()
    pending = batches(task_rows(lines, user_id, new_ids, bad), BATCH_SIZE)
    count = 0
    try:
        with db.engine.begin() as connection:
            rls.apply(connection)
            # One new revision at the end: the user's row of task_revisions stays
            # unlocked (the API can write) until then.
            with seeding.revisions_bumped_after(connection, [user_id]):
                for batch in pending:
                    if bad.total:
                        raise ImportFailed(batch)
                    try:
                        connection.execute(sa.insert(Task), batch)
                    except sa.exc.IntegrityError as error:
                        raise ImportFailed(batch, error) from None
                    count += len(batch)
            if bad.total:
                raise BadLines(bad.reported, bad.total)
            if not count:
                raise OperatorError("the file holds no tasks")
        return count
    except ImportFailed as failure:
        error = failure.error
        pending = itertools.chain([failure.batch], pending)
    clash_count, clash_example = 0, None
    for batch in pending:
        if not bad.total:  # else the bad lines are the report: no ids to look up
            clashes = existing_ids(user_id, [row["id"] for row in batch])
            clash_count += len(clashes)
            clash_example = clash_example or next(iter(clashes), None)
    if bad.total:
        raise BadLines(bad.reported, bad.total)
    if not clash_count:  # not an id after all (or no longer there): the database's word
        raise error
    raise OperatorError(
        f"{clash_count} task id(s) already exist for {user_id!r}"
        f" (e.g. {clash_example}): nothing imported; use --new-ids to re-key"
    )
