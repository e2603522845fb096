"""EXPLAIN (ANALYZE, BUFFERS) of the SQL that each endpoint really issues.

    python benchmarks/plans.py --tokens-file TOKENS.json --out PLANS.md [--user-id U]

Run by benchmarks/run.py right after seeding, with the benchmark's environment
(DATABASE_URL, JWT_SECRET...). It builds the app in-process, calls every endpoint
once through the test client for a user (by default the first user of the tokens
file, who has all the seeded tasks), and a `before_cursor_execute` listener
explains each statement on the same connection with the same parameters, inside
a transaction or savepoint that is rolled back, before the statement itself runs.
So the plans are those of the app's own SQL and bind values, and the write
endpoints' EXPLAIN ANALYZE leaves no trace. The six endpoints send their
statement on the driver (todo/roundtrip.py), in one message after the
row-level-security settings: those are explained on a connection of the same
pool, in a transaction that applies the same settings first and is rolled back.
"""

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DML = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")
PLANNING = re.compile(r"Planning Time: ([\d.]+) ms")
INDEX = re.compile(
    r"((?:Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)?) (?:using|on) (\w+)"
)


class Recorder:
    """Explains every DML statement of the endpoint being recorded."""

    def __init__(self):
        self.endpoint = None
        self.entries = []
        # SQL that calls a function -> (its label, the query the function runs), which
        # EXPLAIN of the call does not show (the one-task GET's task_by_id(), 0006)
        self.inside = {}

    def __call__(self, conn, cursor, statement, parameters, context, executemany):  # noqa: PLR0917
        if self.endpoint is None or executemany or not DML.match(statement):
            return
        raw = cursor.connection  # the psycopg connection of this very statement
        sql = psycopg.ClientCursor(raw).mogrify(statement, parameters)
        with raw.transaction(force_rollback=True), raw.cursor() as explain:
            explain.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(row[0] for row in explain.fetchall())
        self.entries.append({"endpoint": self.endpoint, "sql": sql, "plan": plan})

    def around(self, send):
        """todo.roundtrip._run, explaining each statement before it is sent."""

        def explained_then_sent(engine, sql, params, *rest):
            settings, statement = sql.split(";\n", 1)
            if self.endpoint is not None and DML.match(statement):
                self._explain(engine, settings, statement, params)
                if statement in self.inside:
                    label, query = self.inside[statement]
                    self._explain(engine, settings, query, params, label)
            return send(engine, sql, params, *rest)

        return explained_then_sent

    def _explain(self, engine, settings, statement, params, label=None):
        pooled = engine.raw_connection()
        try:
            raw = pooled.driver_connection
            with raw.transaction(force_rollback=True), psycopg.ClientCursor(raw) as cur:
                cur.execute(settings, params)
                shown = cur.mogrify(statement, params)
                if statement in self.inside:  # a function's first call compiles it
                    cur.execute(statement, params)
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plan = "\n".join(row[0] for row in cur.fetchall())
        finally:
            pooled.close()
        entry = {"endpoint": self.endpoint, "sql": shown, "plan": plan, "label": label}
        if label is not None:
            entry["sql"] = f"-- {label}\n{shown}"
        self.entries.append(entry)


def requests_for(user_id, task_ids):
    base = f"/api/{quote(user_id, safe='')}/tasks"
    one, put, patch, gone = task_ids[0], task_ids[1], task_ids[2], task_ids[3]
    return [
        ("GET one task", "GET", f"{base}/{one}", None),
        ("List, default page (100, -created_at)", "GET", base, None),
        ("List 1000 (limit=1000)", "GET", f"{base}?limit=1000", None),
        ("List, second page (cursor)", "GET", base, "cursor"),
        ("List sort=created_at", "GET", f"{base}?sort=created_at", None),
        ("List sort=-updated_at", "GET", f"{base}?sort=-updated_at", None),
        ("List sort=updated_at", "GET", f"{base}?sort=updated_at", None),
        ("List sort=title", "GET", f"{base}?sort=title", None),
        ("List sort=-title", "GET", f"{base}?sort=-title", None),
        ("List status=pending", "GET", f"{base}?status=pending", None),
        ("List status=completed", "GET", f"{base}?status=completed", None),
        ("List q=1 (title search)", "GET", f"{base}?q=1", None),
        ("Create (POST)", "POST", base, {"title": "Plan task", "description": "For EXPLAIN."}),
        ("Update (PUT)", "PUT", f"{base}/{put}", {"title": "Plan update"}),
        ("Complete (PATCH)", "PATCH", f"{base}/{patch}/complete", None),
        ("Delete", "DELETE", f"{base}/{gone}", None),
    ]


def summarize(plan):
    execution = EXECUTION.search(plan)
    planning = PLANNING.search(plan)
    return {
        "execution_ms": float(execution.group(1)) if execution else None,
        "planning_ms": float(planning.group(1)) if planning else None,
        "indexes": sorted({f"{name} ({scan.lower()})" for scan, name in INDEX.findall(plan)}),
        "sort": any(
            line.strip().startswith(("Sort ", "->  Sort ", "Incremental Sort"))
            or "->  Incremental Sort" in line
            for line in plan.splitlines()
        ),
        "seq_scan": "Seq Scan" in plan,
    }


def render(entries, user_id, task_count, server, failures, *, skipped=()) -> str:
    """PLANS.md: the summary table, the failed and skipped requests, then every plan
    with its SQL."""
    lines = [
        "# Query plans",
        "",
        f"`EXPLAIN (ANALYZE, BUFFERS)` of the SQL each endpoint issues, for user `{user_id}` "
        f"with {task_count} tasks, on {server}, right after seeding "
        "(and `VACUUM ANALYZE tasks`), with the app's own bind values. Recorded by "
        "`benchmarks/plans.py` (run by `benchmarks/run.py`); times are one warm execution.",
        "",
        "| Endpoint | Statement | Execution ms | Index (scan) | Sort node | Seq scan |",
        "|---|---|---:|---|---|---|",
    ]
    for entry in entries:
        s = summarize(entry["plan"])
        verb = entry["sql"].split(None, 1)[0].upper()
        if entry["sql"].lower().startswith("select count("):
            verb += " count(*)"
        verb = entry.get("label") or verb
        lines.append(
            f"| {entry['endpoint']} | {verb} | {s['execution_ms']} | "
            f"{', '.join(s['indexes']) or '-'} | {'yes' if s['sort'] else 'no'} | "
            f"{'yes' if s['seq_scan'] else 'no'} |"
        )
    if failures:
        lines += ["", "Requests that failed (their plans may be missing):", ""]
        lines += [f"- {failure}" for failure in failures]
    if skipped:
        lines += ["", "Requests not made:", ""]
        lines += [f"- {reason}" for reason in skipped]
    current = None
    for entry in entries:
        if entry["endpoint"] != current:
            current = entry["endpoint"]
            lines += ["", f"## {current}"]
        lines += ["", "```sql", entry["sql"].strip(), "```", "", "```", entry["plan"], "```"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--user-id")
    args = parser.parse_args()

    tokens = json.loads(Path(args.tokens_file).read_text())
    user_id = args.user_id or sorted(tokens)[0]
    headers = {"Authorization": f"Bearer {tokens[user_id]}"}

    from todo import create_app, rls, roundtrip, tasks  # noqa: PLC0415 (after sys.path is set)
    from todo.extensions import db  # noqa: PLC0415

    app = create_app()
    recorder = Recorder()
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", recorder)
        roundtrip._run = recorder.around(roundtrip._run)
        called, _ = tasks.select_one("postgresql").compiled(db.engine.dialect)
        inline, _ = tasks.select_one_inline("postgresql").compiled(db.engine.dialect)
        recorder.inside[called] = ("SELECT in task_by_id()", inline)
        with db.engine.connect() as conn, rls.acting_as(user_id):
            rls.apply(conn)  # the user's rows only, as in a request
            task_count = conn.scalar(
                sa.text("SELECT count(*) FROM tasks WHERE user_id = :u"), {"u": user_id}
            )
            task_ids = conn.scalars(
                sa.text("SELECT id FROM tasks WHERE user_id = :u ORDER BY created_at LIMIT 4"),
                {"u": user_id},
            ).all()
            server = (
                f"PostgreSQL {conn.scalar(sa.text('SHOW server_version'))} (random_page_cost "
                f"{conn.scalar(sa.text('SHOW random_page_cost'))}, docs/scaling.md)"
            )

    client = app.test_client()
    next_cursor = None
    failures, skipped = [], []
    for name, method, path, payload in requests_for(user_id, task_ids):
        url, body = path, payload
        if payload == "cursor":
            if next_cursor is None:  # a seed of 100 tasks or fewer per user
                skipped.append(f"{name}: the first page holds every task")
                continue
            url, body = f"{path}?cursor={next_cursor}", None
        recorder.endpoint = name
        response = client.open(url, method=method, json=body, headers=headers)
        recorder.endpoint = None
        if response.status_code >= 300:
            failures.append(f"{name}: {method} {url} answered {response.status_code}")
        if name.startswith("List, default"):
            next_cursor = response.get_json()["meta"]["next_cursor"]

    Path(args.out).write_text(
        render(recorder.entries, user_id, task_count, server, failures, skipped=skipped)
    )
    print(
        f"plans: {len(recorder.entries)} statements of {len(requests_for(user_id, task_ids))} "
        f"requests written to {args.out}"
    )
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
