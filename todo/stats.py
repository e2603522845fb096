"""Usage figures for `flask tasks stats`: tasks, users, tasks per user, storage"""

import math

import sqlalchemy as sa

from todo.extensions import db
from todo.models import Task

PERCENTILES = (50, 90, 99)


def percentile(ordered: list[int], p: float) -> int | None:
    """Nearest-rank percentile of an ascending list; None when it is empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _postgres_sizes() -> list[dict]:
    sizes = []
    for table in db.metadata.sorted_tables:
        row = db.session.execute(
            sa.text(
                "SELECT pg_total_relation_size(oid), pg_relation_size(oid),"
                " pg_indexes_size(oid) FROM pg_class WHERE oid = to_regclass(:name)"
            ),
            {"name": table.name},
        ).first()
        if row is None:
            continue
        indexes = db.session.execute(
            sa.text(
                "SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x"
                " JOIN pg_class i ON i.oid = x.indexrelid"
                " WHERE x.indrelid = to_regclass(:name) ORDER BY i.relname"
            ),
            {"name": table.name},
        ).all()
        sizes.append(
            {
                "table": table.name,
                "total_bytes": row[0],
                "table_bytes": row[1],
                "indexes_bytes": row[2],
                "indexes": {name: size for name, size in indexes},
            }
        )
    return sizes


def _sqlite_size() -> int:
    page_count = db.session.execute(sa.text("PRAGMA page_count")).scalar()
    page_size = db.session.execute(sa.text("PRAGMA page_size")).scalar()
    return page_count * page_size


def collect(top: int = 10) -> dict:
    """Every figure as plain JSON-ready values."""
    per_user = db.session.execute(
        sa.select(Task.user_id, sa.func.count()).group_by(Task.user_id)
    ).all()
    completed = db.session.scalar(
        sa.select(sa.func.count()).select_from(Task).where(Task.is_completed)
    )
    counts = sorted(count for _, count in per_user)
    total = sum(counts)
    busiest = sorted(per_user, key=lambda row: (-row[1], row[0]))[:top]
    figures = {
        "backend": db.engine.dialect.name,
        "tasks": total,
        "users": len(counts),
        "completed": completed,
        "completed_share": round(completed / total, 4) if total else None,
        "tasks_per_user": {
            "min": counts[0] if counts else None,
            "mean": round(total / len(counts), 1) if counts else None,
            **{f"p{p}": percentile(counts, p) for p in PERCENTILES},
            "max": counts[-1] if counts else None,
        },
        "top_users": [{"user_id": user_id, "tasks": count} for user_id, count in busiest],
    }
    if db.engine.dialect.name == "postgresql":
        figures["storage"] = _postgres_sizes()
    elif db.engine.dialect.name == "sqlite":
        figures["database_bytes"] = _sqlite_size()
    return figures


def human_bytes(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # pragma: no cover


def render(figures: dict) -> str:
    """The figures as aligned text, for a terminal."""
    share = figures["completed_share"]
    lines = [
        f"tasks            {figures['tasks']}",
        f"users            {figures['users']}",
        f"completed        {figures['completed']}"
        + (f" ({share:.1%})" if share is not None else ""),
    ]
    per_user = figures["tasks_per_user"]
    if figures["users"]:
        lines.append(
            "tasks per user   " + "  ".join(f"{key} {value}" for key, value in per_user.items())
        )
    if figures["top_users"]:
        lines.append(f"top {len(figures['top_users'])} users")
        width = max(len(row["user_id"]) for row in figures["top_users"])
        lines += [f"  {row['user_id']:<{width}}  {row['tasks']:>8}" for row in figures["top_users"]]
    for table in figures.get("storage", []):
        lines.append(
            f"table {table['table']}: {human_bytes(table['total_bytes'])} in all,"
            f" {human_bytes(table['table_bytes'])} rows,"
            f" {human_bytes(table['indexes_bytes'])} indexes"
        )
        lines += [f"  {name:<28} {human_bytes(size)}" for name, size in table["indexes"].items()]
    if "database_bytes" in figures:
        lines.append(f"database file    {human_bytes(figures['database_bytes'])}")
    return "\n".join(lines)
