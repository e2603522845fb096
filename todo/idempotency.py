"""Idempotency-Key on POST: one task per key and body, whatever the retries and races

The key's row and the task are inserted in one transaction, key first. The primary
key (user_id, key) decides a race: on PostgreSQL a second INSERT of the same key
waits for the first transaction and then fails with a unique violation; on SQLite
writers are serialised and the later INSERT fails the same way. The loser rolls
back and replays what the winner stored. Nothing is stored for a request that
fails, so a client can fix its body and retry with the same key.
"""

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask_smorest import abort

from todo import tasks
from todo.extensions import db
from todo.models import IDEMPOTENCY_KEY_MAX, IdempotencyKey, Task, utcnow
from todo.schemas import task_json

TTL = timedelta(hours=24)
# Visible ASCII, as header values travel safely; UUIDs are the usual choice.
KEY_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}")


@dataclass(frozen=True)
class Outcome:
    """The task's data and headers of a 201, and whether it replays an earlier one."""

    data: dict
    headers: dict
    replayed: bool


def fingerprint(payload) -> str:
    """sha256 of the canonical JSON of a parsed body: key order and spacing ignored.

    surrogatepass: a lone surrogate may sit in a field the schema ignores (a task's
    read-only fields sent back); valid text encodes as plain UTF-8, as stored keys were.
    """
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _live(user_id: str, key: str) -> IdempotencyKey | None:
    return db.session.scalar(
        sa.select(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at > utcnow() - TTL,
        )
    )


def _replay(record: IdempotencyKey, request_fingerprint: str) -> Outcome:
    if record.fingerprint != request_fingerprint:
        abort(
            409,
            message="This Idempotency-Key was already used with another request body; "
            "use a new key for a new task.",
        )
    return Outcome(dict(record.response_body), dict(record.response_headers), replayed=True)


def _create(user_id, key, request_fingerprint, fields, headers_for) -> Outcome:
    now = utcnow()
    # An expired record of this key gives way to the new request.
    db.session.execute(
        sa.delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at <= now - TTL,
        )
    )
    task = tasks.new_task(user_id, now=now, **fields)
    record = IdempotencyKey(
        user_id=user_id,
        key=key,
        fingerprint=request_fingerprint,
        task_id=task.id,
        status_code=201,
        created_at=now,
    )
    db.session.add(record)
    db.session.flush()  # the key first: a concurrent holder of it stops us here
    db.session.add(task)
    db.session.flush()
    data, headers = task_json(task), headers_for(task)
    record.response_body, record.response_headers = data, headers
    db.session.commit()
    return Outcome(data, headers, replayed=False)


def create_task_once(
    user_id: str,
    key: str,
    request_fingerprint: str,
    fields: dict,
    headers_for: Callable[[Task], dict],
) -> Outcome:
    """Create the task of `fields` unless `key` already created one within the TTL.

    A same-body retry gets the stored answer back; another body is 409.
    """
    record = _live(user_id, key)
    if record is None:
        try:
            return _create(user_id, key, request_fingerprint, fields, headers_for)
        except sa.exc.IntegrityError:
            db.session.rollback()
            record = _live(user_id, key)
            if record is None:  # the conflict was not about this key
                raise
    return _replay(record, request_fingerprint)


def expire(now=None) -> int:
    """Delete the records older than the TTL; returns how many went."""
    cutoff = (now or utcnow()) - TTL
    result = db.session.execute(
        sa.delete(IdempotencyKey).where(IdempotencyKey.created_at <= cutoff)
    )
    db.session.commit()
    return result.rowcount
