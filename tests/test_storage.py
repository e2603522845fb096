"""Storage: the tasks table as migrated, the CHECK, UTC times, and index-served list orders"""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from helpers import TIME, acting_as, create, every_row, insert, row

from todo import cursor, roundtrip
from todo import tasks as service
from todo.extensions import db
from todo.models import Task
from todo.schemas import SORTS

COMMON_TYPES = {
    "user_id": "VARCHAR(255)",
    "title": "VARCHAR(500)",
    "description": "TEXT",
    "is_completed": "BOOLEAN",
    "version": "INTEGER",
}
# The declared types, as each backend reports them.
TYPES = {
    "postgresql": {
        **COMMON_TYPES,
        "id": "UUID",
        "title_lower": 'VARCHAR(1000) COLLATE "C"',
        "completed_at": "TIMESTAMP WITH TIME ZONE",
        "created_at": "TIMESTAMP WITH TIME ZONE",
        "updated_at": "TIMESTAMP WITH TIME ZONE",
    },
    "sqlite": {
        **COMMON_TYPES,
        "id": "CHAR(32)",
        "title_lower": "VARCHAR(1000)",
        "completed_at": "DATETIME",
        "created_at": "DATETIME",
        "updated_at": "DATETIME",
    },
}
NULLABLE = {"description", "completed_at"}
COMPLETED_AT_CHECK = "ck_tasks_completed_at_iff_completed"
INDEXES = {
    "ix_tasks_user_created": ["user_id", "created_at", "id"],
    "ix_tasks_user_updated": ["user_id", "updated_at", "id"],
    "ix_tasks_user_title": ["user_id", "title_lower", "id"],
}
SORT_INDEX = {
    "created_at": "ix_tasks_user_created",
    "updated_at": "ix_tasks_user_updated",
    "title": "ix_tasks_user_title",
}


def inspect(app):
    with app.app_context():
        inspector = sa.inspect(db.engine)
        return (
            {c["name"]: c for c in inspector.get_columns("tasks")},
            inspector.get_pk_constraint("tasks"),
            {i["name"]: i["column_names"] for i in inspector.get_indexes("tasks")},
            {c["name"] for c in inspector.get_check_constraints("tasks")},
        )


def test_the_tasks_table_as_migrated(app, backend):
    columns, primary_key, indexes, checks = inspect(app)

    with app.app_context():
        dialect = db.engine.dialect
        types = {name: c["type"].compile(dialect=dialect) for name, c in columns.items()}
    assert types == TYPES[backend]
    assert {name for name, c in columns.items() if c["nullable"]} == NULLABLE
    assert primary_key["name"] == "pk_tasks"
    assert primary_key["constrained_columns"] == ["user_id", "id"]
    assert indexes == INDEXES
    assert checks == {"ck_tasks_completed_at_iff_completed", "ck_tasks_title_length"}


def raw_row(**values):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "user_id": "alice",
        "id": uuid.uuid4(),
        "title": "t",
        "title_lower": "t",
        "description": None,
        "is_completed": False,
        "completed_at": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        **values,
    }


def check_failed(name):
    return {
        "sqlite": f"CHECK constraint failed: {name}",
        "postgresql": f'new row for relation "tasks" violates check constraint "{name}"',
    }


def not_null_failed(column):
    return {
        "sqlite": f"NOT NULL constraint failed: tasks.{column}",
        "postgresql": f'null value in column "{column}" of relation "tasks"'
        " violates not-null constraint",
    }


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        ({"is_completed": True, "completed_at": None}, check_failed(COMPLETED_AT_CHECK)),
        (
            {"is_completed": False, "completed_at": datetime(2026, 1, 1, tzinfo=UTC)},
            check_failed(COMPLETED_AT_CHECK),
        ),
        ({"title": ""}, check_failed("ck_tasks_title_length")),
        ({"title": None}, not_null_failed("title")),
        ({"user_id": None}, not_null_failed("user_id")),
    ],
)
def test_the_database_refuses_inconsistent_rows(app, backend, values, refusal):
    with app.app_context(), every_row():
        with pytest.raises(sa.exc.IntegrityError) as raised:
            db.session.execute(sa.insert(Task.__table__).values(**raw_row(**values)))
            db.session.commit()
        # each row is refused by the rule it breaks, not by another one
        assert str(raised.value.orig).splitlines()[0] == refusal[backend]
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 0


def test_the_database_accepts_consistent_rows(app):
    with app.app_context(), every_row():
        db.session.execute(sa.insert(Task.__table__).values(**raw_row()))
        db.session.execute(
            sa.insert(Task.__table__).values(
                **raw_row(is_completed=True, completed_at=datetime(2026, 1, 2, tzinfo=UTC))
            )
        )
        db.session.commit()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 2


def test_the_same_id_for_two_users_is_two_rows_but_not_twice_for_one(app, backend):
    task_id = uuid.uuid4()
    with app.app_context(), every_row():
        db.session.execute(sa.insert(Task.__table__).values(**raw_row(id=task_id)))
        db.session.execute(sa.insert(Task.__table__).values(**raw_row(id=task_id, user_id="bob")))
        db.session.commit()
        with pytest.raises(sa.exc.IntegrityError) as raised:
            db.session.execute(sa.insert(Task.__table__).values(**raw_row(id=task_id)))
        db.session.rollback()
        assert (
            str(raised.value.orig).splitlines()[0]
            == {
                "sqlite": "UNIQUE constraint failed: tasks.user_id, tasks.id",
                "postgresql": 'duplicate key value violates unique constraint "pk_tasks"',
            }[backend]
        )
        owners = db.session.scalars(sa.select(Task.user_id).where(Task.id == task_id))
        assert sorted(owners) == ["alice", "bob"]


def test_times_come_back_utc_with_z_and_microseconds(app, alice):
    task = create(alice, is_completed=True)

    for field in ("created_at", "updated_at", "completed_at"):
        assert TIME.match(task[field]), field
    stored = row(app, task["id"])
    for field in ("created_at", "updated_at", "completed_at"):
        assert stored[field].tzinfo == UTC
    assert alice.get(f"/api/alice/tasks/{task['id']}").json["data"] == task


def test_other_offsets_are_converted_to_utc_and_whole_seconds_keep_six_digits(app, alice):
    paris = timezone(timedelta(hours=2))
    (task_id,) = insert(app, titles=["t"], created_at=datetime(2026, 6, 1, 14, 0, 0, tzinfo=paris))

    data = alice.get(f"/api/alice/tasks/{task_id}").json["data"]

    assert data["created_at"] == "2026-06-01T12:00:00.000000Z"
    assert row(app, task_id)["created_at"] == datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_microseconds_survive_the_round_trip(app, alice):
    moment = datetime(2026, 1, 14, 10, 0, 0, 123456, tzinfo=UTC)
    (task_id,) = insert(app, titles=["t"], created_at=moment)

    data = alice.get(f"/api/alice/tasks/{task_id}").json["data"]

    assert data["created_at"] == "2026-01-14T10:00:00.123456Z"


def test_naive_datetimes_are_refused(app):
    with app.app_context(), every_row():
        task = service.new_task("alice", "t")
        task.created_at = datetime(2026, 1, 1)
        db.session.add(task)
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            db.session.commit()
        db.session.rollback()


# Query plans


USER = "user07"


def seed_many_users(app, users=20, per_user=200):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context(), every_row():
        rows = []
        for u in range(users):
            for n in range(per_user):
                moment = start + timedelta(minutes=n, microseconds=u)
                title = f"Task {(n * 7919) % per_user:04d} of user {u}"
                rows.append(
                    raw_row(
                        user_id=f"user{u:02d}",
                        title=title,
                        title_lower=title.lower(),
                        created_at=moment,
                        updated_at=moment + timedelta(seconds=(n * 31) % 97),
                    )
                )
        db.session.execute(sa.insert(Task.__table__), rows)
        db.session.commit()
        with db.engine.connect() as connection:
            connection.execute(
                sa.text("ANALYZE tasks" if db.engine.dialect.name == "postgresql" else "ANALYZE")
            )
            connection.commit()


def captured_list_statements(app, sort, after=None):
    """The SELECT ... ORDER BY that todo.tasks.list_page sends, with its parameters.

    On PostgreSQL the statement goes to the driver after the RLS settings, in one
    message (todo/roundtrip.py); elsewhere through SQLAlchemy's execution."""
    captured = []

    def capture(conn, cursor, statement, parameters, *args):
        if "ORDER BY" in statement:
            captured.append((statement, parameters))

    send = roundtrip._run

    def capture_sent(engine, sql, parameters, *rest):
        settings, statement = sql.split(";\n", 1)
        assert settings + ";\n" == roundtrip.SETTINGS
        capture(None, None, statement, parameters)
        return send(engine, sql, parameters, *rest)

    with app.app_context(), acting_as(USER):
        sa.event.listen(db.engine, "before_cursor_execute", capture)
        roundtrip._run = capture_sent
        try:
            page = service.list_page(USER, sort=sort, limit=20, after=after)
        finally:
            roundtrip._run = send
            sa.event.remove(db.engine, "before_cursor_execute", capture)
        _, value, last_id = cursor.decode(page.next_cursor)
    assert len(captured) == 1
    return captured[0], page, (value, last_id)


def plan_nodes(plan, counting=False):
    """(node, whether it is under the InitPlan that counts meta.total)"""
    yield plan, counting
    for child in plan.get("Plans", []):
        yield from plan_nodes(child, counting or child.get("Parent Relationship") == "InitPlan")


def explain(app, statement, parameters):
    """The plan of `statement` in a transaction like a request's (acting as the user)."""
    with app.app_context(), acting_as(USER):
        connection = db.session.connection()
        try:
            if connection.dialect.name == "postgresql":
                result = connection.exec_driver_sql(
                    "EXPLAIN (FORMAT JSON) " + statement, parameters
                )
                plan = result.scalar()
                return list(plan_nodes(plan[0]["Plan"]))
            result = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return [r[-1] for r in result]
        finally:
            db.session.rollback()


@pytest.mark.parametrize("sort", SORTS)
def test_every_list_order_is_served_by_a_user_index_without_a_sort(app, backend, sort):
    seed_many_users(app)
    index = SORT_INDEX[sort.lstrip("-")]

    (first, first_params), page, after = captured_list_statements(app, sort)
    assert page.count == 20 and page.total == 200
    (second, second_params), page2, _ = captured_list_statements(app, sort, after)
    assert page2.count == 20
    first_ids = {task["id"] for task in json.loads(page.items_json)}
    assert not first_ids & {task["id"] for task in json.loads(page2.items_json)}

    for statement, parameters in ((first, first_params), (second, second_params)):
        nodes = explain(app, statement, parameters)
        if backend == "postgresql":
            kinds = [node["Node Type"] for node, _ in nodes]
            assert "Sort" not in kinds and "Incremental Sort" not in kinds, kinds
            assert [counting for node, counting in nodes if node["Node Type"] == "Aggregate"] == [
                True
            ], nodes  # the total, counted in the page's own statement
            scans = [
                node
                for node, counting in nodes
                if node["Node Type"] in ("Index Scan", "Index Only Scan") and not counting
            ]
            assert [scan["Index Name"] for scan in scans] == [index], nodes
            assert "user_id" in scans[0]["Index Cond"]
        else:
            assert not any("TEMP B-TREE" in detail for detail in nodes), nodes
            assert any(f"USING INDEX {index}" in detail for detail in nodes), nodes


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite runs select_one_inline itself
def test_task_by_id_returns_what_its_inline_query_returns(app, alice, bob):
    """Migration 0006 holds a copy of the one-task query, the task's JSON included."""
    ids = [
        create(alice)["id"],
        create(alice, title=" Ünïcode \"quotes\" 'and' \\ back\tslash ", description="")["id"],
        create(alice, title="done", description="x" * 10_000, is_completed=True)["id"],
    ]
    bobs = create(bob, user="bob")["id"]
    inline_json = {}
    with app.app_context():
        for task_id in [*ids, bobs, str(uuid.uuid4())]:
            params = {"owner_id": "alice", "task_id": uuid.UUID(task_id)}
            called = roundtrip.rows(service.select_one("postgresql"), "alice", params)
            inline = roundtrip.rows(service.select_one_inline("postgresql"), "alice", params)
            assert [tuple(r) for r in called] == [tuple(r) for r in inline]
            assert len(called) == (task_id in ids)  # none of bob's, through RLS too
            inline_json.update((task_id, row.json) for row in inline)
        as_bob = {"owner_id": "alice", "task_id": uuid.UUID(ids[0])}
        assert roundtrip.rows(service.select_one("postgresql"), "bob", as_bob) == []
    for task_id in ids:  # and the API answers what the inline query encodes
        assert alice.get(f"/api/alice/tasks/{task_id}").json["data"] == json.loads(
            inline_json[task_id]
        )
