"""Helpers of the operator-command tests: throwaway databases, subprocess environments"""

import contextlib
import os
import socket
import uuid
from pathlib import Path

from conftest import (
    TEST_SECRET,
    create_postgres_database,
    drop_postgres_database,
    migrated,
)

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable_url(backend: str, tmp_path: Path) -> str:
    """A database URL that cannot be opened: a missing folder, or a closed port."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'missing-folder' / 'todo.sqlite3'}"
    return f"postgresql://postgres@127.0.0.1:{free_port()}/todo"


@contextlib.contextmanager
def fresh_database(backend: str, tmp_path: Path, migrate: bool = True):
    """The URL of a new database of its own, migrated unless told otherwise."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'fresh-{uuid.uuid4().hex[:8]}.sqlite3'}"
        if migrate:
            migrated(url)
        yield url
        return
    name = f"todo_ops_{uuid.uuid4().hex[:12]}"
    url = create_postgres_database(name)
    try:
        if migrate:
            migrated(url)
        yield url
    finally:
        drop_postgres_database(name)


def command_environment(database_url: str, **extra) -> dict[str, str]:
    """The environment of a `flask` subprocess on `database_url`, as in production."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "JWT_", "CORS_")) and key != "DATABASE_URL"
    }
    environment.update(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "JWT_SECRET": TEST_SECRET,
            "LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return environment
