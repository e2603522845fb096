"""Opaque, signed keyset cursors for task lists"""

import uuid
from datetime import datetime

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer


class InvalidCursor(ValueError):
    pass


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="todo.tasks.cursor")


def encode(sort: str, value: str | datetime, task_id: uuid.UUID) -> str:
    """The cursor that resumes a `sort` listing after the row (value, task_id)."""
    if isinstance(value, datetime):
        value = value.isoformat()
    return _serializer().dumps([sort, value, task_id.hex])


def decode(token: str) -> tuple[str, str | datetime, uuid.UUID]:
    """(sort, value, task_id) of a cursor made by `encode`; InvalidCursor otherwise."""
    try:
        sort, value, task_id = _serializer().loads(token)
        if sort.lstrip("-") in ("created_at", "updated_at"):
            value = datetime.fromisoformat(value)
        return sort, value, uuid.UUID(hex=task_id)
    except (BadData, ValueError, TypeError, AttributeError):
        raise InvalidCursor("Invalid or tampered cursor.") from None
