"""Operator commands: `flask tasks ...`

Thin: options, output and confirmations here; the work is in todo/ (devtokens,
seeding, bench, stats, transfer, admin, doctor). Every failure is one line on
stderr, never a traceback, and its exit status says which kind: 2 for a usage
error (an option or argument missing, malformed or in conflict with another,
after click's usage lines), 1 for anything else (a configuration that refuses,
the database, a file, a failed check or gate, Ctrl-C).
"""

import contextlib
import errno
import functools
import json
import math
import random
import shlex
import signal
import sys
import time
import urllib.parse

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from todo import (
    admin,
    bench,
    devtokens,
    doctor,
    files,
    idempotency,
    rls,
    seeding,
    stats,
    transfer,
)
from todo.models import user_id_problem


class OperatorCommands(AppGroup):
    """`flask tasks`: output that cannot be written (a full disk behind `>`) is one
    line too. (click's main already ends a broken pipe, `| head`, quietly.)"""

    UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as error:
            if error.errno not in self.UNWRITABLE or error.filename is not None:
                raise
            raise click.ClickException(f"cannot write the output: {error.strerror}") from None


tasks = OperatorCommands("tasks", help="Seed, load-check and administer the task API.")


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange without nan, which every bound check lets through, nor inf
    (either would never stop a bench, nor fail its --p95-ms gate)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def operator_command(function):
    """Turn the expected failures into one-line errors (exit 1)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            # Operators act across users: past PostgreSQL's row-level security.
            with rls.bypass():
                return function(*args, **kwargs)
        except admin.OperatorError as error:
            raise click.ClickException(str(error)) from None
        except sa.exc.SQLAlchemyError as error:
            raise click.ClickException(admin.database_error(error)) from None

    return wrapper


def _ttl(ctx, param, value):
    try:
        return devtokens.parse_ttl(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _user_id(ctx, param, value):
    values = value if isinstance(value, tuple) else (value,)
    for user_id in values:
        problem = user_id is not None and user_id_problem(user_id)
        if problem:
            raise click.BadParameter(f"must be {problem}")
    return value


def _file_name(ctx, param, value):
    # click.Path takes "": seed would then write no tokens file, and export crash.
    if value == "":
        raise click.BadParameter("must not be empty")
    return value


@contextlib.contextmanager
def _ctrl_c_between_batches(progress):
    """Yield `progress` wrapped to raise KeyboardInterrupt (click's "Aborted!") when
    Ctrl-C was pressed since: between batches, never inside a database call.

    Interrupted there, psycopg cancels the statement and prints that it ignored the
    error of leaving its pipeline. A second Ctrl-C interrupts at once. A Ctrl-C
    after the last batch (during the commit) is dropped: the seed completes. Where
    Ctrl-C is not Python's (ignored, as in a shell's background job) it stays so.
    """
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield progress
        return
    pressed = []

    def hold(signum, frame):
        pressed.append(signum)
        signal.signal(signal.SIGINT, previous)

    def checked(count):
        if pressed:
            raise KeyboardInterrupt
        progress(count)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield checked
    finally:
        signal.signal(signal.SIGINT, previous)


@tasks.command("token")
@click.option(
    "--user-id", required=True, callback=_user_id, help="The token's subject (the user id)."
)
@click.option(
    "--ttl",
    default="1h",
    show_default=True,
    callback=_ttl,
    help="Lifetime: 900s, 15m, 1h, 7d (at most 3650d).",
)
@click.option("--curl", is_flag=True, help="Print a ready-to-run curl line instead.")
def token_command(user_id, ttl, curl):
    """Mint a development token signed with JWT_SECRET.

    Refused when ENVIRONMENT=production or when only a JWKS is configured.

    \b
    Example:
      export TOKEN=$(flask tasks token --user-id alice)
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/alice/tasks
    """
    try:
        token = devtokens.mint(current_app.config, user_id, ttl)
    except devtokens.TokenRefused as error:
        raise click.ClickException(str(error)) from None
    if curl:
        # The id is quoted for the shell and escaped for the URL.
        url = f"http://127.0.0.1:8000/api/{urllib.parse.quote(user_id, safe='')}/tasks"
        click.echo(f"curl -H 'Authorization: Bearer {token}' {shlex.quote(url)}")
    else:
        click.echo(token)


@tasks.command("seed")
@click.option(
    "--users",
    type=click.IntRange(0, 1_000_000),
    default=None,
    help="New users with random ids.  [default: 10 unless --user-id is given]",
)
@click.option(
    "--tasks-per-user",
    type=click.IntRange(1, 1_000_000),
    default=100,
    show_default=True,
    help="Tasks added to each user.",
)
@click.option(
    "--user-id",
    "user_ids",
    multiple=True,
    callback=_user_id,
    help="Seed this user too (repeatable); existing users get more tasks.",
)
@click.option(
    "--completed-ratio",
    type=FiniteFloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Share of the tasks that are completed.",
)
@click.option("--random-seed", type=int, help="Make the ids of new users and the texts repeatable.")
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False),
    callback=_file_name,
    help="Once seeded, write {user id: development token} as JSON here (needs JWT_SECRET).",
)
@click.option(
    "--token-ttl",
    default="24h",
    show_default=True,
    callback=_ttl,
    help="Lifetime of the tokens in --tokens-file.",
)
@operator_command
def seed_command(
    *, users, tasks_per_user, user_ids, completed_ratio, random_seed, tokens_file, token_ttl
):
    """Bulk-create realistic tasks, in one transaction (re-running adds more).

    \b
    Example:
      flask tasks seed --users 100 --tasks-per-user 1000 --tokens-file tokens.json
      flask tasks seed --user-id alice --tasks-per-user 50 --completed-ratio 0.5
    """
    if users is None:
        users = 0 if user_ids else 10
    rng = random.Random(random_seed)
    new_users = [seeding.random_user_id(rng) for _ in range(users)]
    all_users = list(dict.fromkeys([*user_ids, *new_users]))
    if not all_users:
        raise click.UsageError("nothing to seed: give --users N or --user-id ID")
    total = len(all_users) * tasks_per_user
    if total > seeding.MAX_TASKS:
        raise click.UsageError(f"{total:,} tasks is more than {seeding.MAX_TASKS:,} in one run")
    admin.check_database()  # fail in one line before anything is written
    tokens_output = contextlib.nullcontext()
    if tokens_file:
        try:
            tokens = {
                user: devtokens.mint(current_app.config, user, token_ttl) for user in all_users
            }
        except devtokens.TokenRefused as error:
            raise click.ClickException(f"--tokens-file: {error}") from None
        tokens_output = files.replaced_when_complete(tokens_file, private=True)

    with tokens_output as output:
        if tokens_file:
            # Written before the seed, so that a file that cannot be written fails it
            # with nothing seeded; a regular file appears once the seed has committed.
            json.dump(tokens, output, indent=2)
            output.write("\n")
            output.flush()
        started = time.perf_counter()
        with (
            click.progressbar(length=total, label="Seeding", file=sys.stderr) as bar,
            _ctrl_c_between_batches(bar.update) as progress,
        ):
            count = seeding.seed(all_users, tasks_per_user, completed_ratio, rng, progress)
        elapsed = time.perf_counter() - started
    click.echo(
        f"Seeded {count} tasks for {len(all_users)} users in {elapsed:.1f} s"
        f" ({count / elapsed:,.0f} tasks/s)."
    )
    more = len(all_users) - 5
    shown = ", ".join(all_users[:5]) + (f" and {more} more" if more > 0 else "")
    click.echo(f"Users: {shown}")
    if tokens_file:
        click.echo(f"Tokens: {tokens_file}")


def _bench_users(count, seed_tasks, base_url, timeout) -> list[str]:
    """`count` users from the database, the missing ones seeded; what would fail
    after the seed (tokens, the --url server, the database) fails first, in one line."""
    bench.check_minting(current_app.config)
    if base_url:
        bench.check_reachable(base_url, timeout)
    admin.check_database()
    chosen, seeded = bench.pick_users(count, seed_tasks)
    if seeded:
        click.echo(f"Seeded {seed_tasks} tasks for each of {', '.join(seeded)}.", err=True)
    return chosen


@tasks.command("bench")
@click.option("--url", help="A running server (http://127.0.0.1:8000); default: start one.")
@click.option("--allow-remote", is_flag=True, help="Allow a --url that is not on 127.0.0.1.")
@click.option(
    "--users",
    type=click.IntRange(1, 10_000),
    default=10,
    show_default=True,
    help="Users to spread the load over (taken from the database, seeded if missing).",
)
@click.option(
    "--user-id",
    "user_ids",
    multiple=True,
    callback=_user_id,
    help="Use these users instead of reading the database (repeatable).",
)
@click.option(
    "--seed-tasks",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="Tasks given to each bench user it has to create.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Requests in flight at once.",
)
@click.option(
    "--duration",
    type=FiniteFloatRange(0.1, bench.MAX_SECONDS),
    help="Seconds to run.  [default: 10, unless --requests]",
)
@click.option(
    "--requests",
    "request_count",
    type=click.IntRange(1, 10_000_000),
    help="Requests to send (stops after 600 s anyway).",
)
@click.option(
    "--scenario",
    type=click.Choice(list(bench.SCENARIOS)),
    default="mixed",
    show_default=True,
    help="mixed: 50% list, 30% get, 15% create, 5% complete.",
)
@click.option(
    "--p95-ms",
    type=FiniteFloatRange(min=0, min_open=True),
    help="Fail (exit 1) when the p95 latency is above this.",
)
@click.option(
    "--timeout",
    type=FiniteFloatRange(0.1, 120),
    default=10,
    show_default=True,
    help="Seconds before a request counts as failed.",
)
@click.option(
    "--server-workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="gunicorn workers of the server it starts (4 threads each).",
)
@click.option(
    "--tokens-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Use these tokens ({user id: token} JSON, e.g. from seed) instead of minting.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@operator_command
def bench_command(
    *,
    url,
    allow_remote,
    users,
    user_ids,
    seed_tasks,
    concurrency,
    duration,
    request_count,
    scenario,
    p95_ms,
    timeout,
    server_workers,
    tokens_file,
    as_json,
):
    """Load-check the API: requests/s, p50/p95/p99/max latency, errors by status.

    Exits 1 when a request failed or the p95 is above --p95-ms, so it can gate a
    deploy. Without --url it runs gunicorn on a free 127.0.0.1 port against the
    configured database, and stops it afterwards.

    \b
    Example:
      flask tasks seed --users 20 --tasks-per-user 500
      flask tasks bench --users 20 --concurrency 8 --duration 30 --p95-ms 250
      flask tasks bench --url http://127.0.0.1:8000 --scenario list --requests 5000 --json
      flask tasks bench --url https://api.example --allow-remote --tokens-file tokens.json
    """
    if duration is not None and request_count is not None:
        raise click.UsageError("give --duration or --requests, not both")
    if duration is None and request_count is None:
        duration = 10.0
    if tokens_file and user_ids:
        raise click.UsageError("give --tokens-file or --user-id, not both")
    try:
        base_url = bench.check_url(url, allow_remote) if url else None
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if tokens_file:
        tokens = bench.read_tokens(tokens_file)
    else:
        chosen = list(dict.fromkeys(user_ids)) or _bench_users(users, seed_tasks, base_url, timeout)
        tokens = bench.mint_tokens(current_app.config, chosen)

    def measure(target):
        load = bench.Load(target, tokens, scenario, concurrency, timeout)
        try:
            load.prepare()
            samples, elapsed = load.run(duration, request_count)
        finally:
            load.close()
        return bench.summarize(
            samples,
            elapsed,
            scenario=scenario,
            url=target,
            users=len(tokens),
            concurrency=concurrency,
            p95_limit_ms=p95_ms,
        )

    if base_url:
        summary = measure(base_url)
    else:
        if not as_json:
            click.echo("Starting gunicorn on 127.0.0.1...", err=True)
        with bench.local_server(current_app.config, workers=server_workers) as local_url:
            summary = measure(local_url)

    failures = bench.failures(summary, p95_ms)
    summary["ok"] = not failures
    click.echo(json.dumps(summary, indent=2) if as_json else bench.render(summary))
    if failures:
        raise click.ClickException("; ".join(failures))


@tasks.command("stats")
@click.option(
    "--top",
    type=click.IntRange(0, 1000),
    default=10,
    show_default=True,
    help="How many of the busiest users to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@operator_command
def stats_command(top, as_json):
    """Tasks, users, completed share, tasks per user; storage sizes on PostgreSQL.

    \b
    Example:
      flask tasks stats --top 5
      flask tasks stats --json | jq .tasks_per_user
    """
    figures = stats.collect(top)
    click.echo(json.dumps(figures, indent=2) if as_json else stats.render(figures))


@tasks.command("export")
@click.option("--user-id", required=True, callback=_user_id, help="Whose tasks.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    callback=_file_name,
    help="File to write (replaced only when complete; a symlink's target; a device or"
    " /dev/stdout is appended to).  [default: stdout]",
)
@operator_command
def export_command(user_id, output):
    """Write one user's tasks as JSON Lines: one task a line, the API's eight fields.

    \b
    Example:
      flask tasks export --user-id alice --output alice.jsonl
      flask tasks import alice.jsonl --user-id alice
    """
    count = admin.require_user(user_id)
    if output == "-":
        for line in transfer.export_lines(user_id):
            click.echo(line)
        click.echo(f"Exported {count} tasks of {user_id!r}.", err=True)
    else:
        count = transfer.export_to_file(user_id, output)
        click.echo(f"Exported {count} tasks of {user_id!r} to {output}.")


@tasks.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig", errors="surrogateescape"))
@click.option("--user-id", required=True, callback=_user_id, help="The owner of the tasks.")
@click.option("--new-ids", is_flag=True, help="Give every task a new id (times are kept).")
@operator_command
def import_command(file, user_id, new_ids):
    """Add the tasks of a JSON Lines export to a user: all lines, or none.

    Every line is checked as the API checks a new task, plus its id and times;
    bad lines are listed by number. Ids are kept unless --new-ids is given.
    Give - as FILE to read stdin. Tasks go in by batches as the lines are read, in
    one transaction that stays open until the last line: pipe from a fast source,
    not a slow one (see the README).

    \b
    Example:
      flask tasks import alice.jsonl --user-id alice
      flask tasks import alice.jsonl --user-id alice-copy --new-ids
      flask tasks export --user-id alice | flask tasks import - --user-id bob
    """
    admin.check_database()  # fail in one line before reading a large file
    try:
        count = transfer.import_lines(transfer.bounded_lines(file), user_id, new_ids)
    except transfer.BadLines as error:
        for number, message in error.errors:
            click.echo(f"{file.name}:{number}: {message}", err=True)
        if error.total > len(error.errors):
            click.echo(f"... and {error.total - len(error.errors)} more", err=True)
        raise
    click.echo(f"Imported {count} tasks for {user_id!r}.")


@tasks.command("purge-user")
@click.option("--user-id", required=True, callback=_user_id, help="Whose data to erase.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@operator_command
def purge_user_command(user_id, yes):
    """Delete all of one user's tasks and other records, in one transaction.

    \b
    Example:
      flask tasks purge-user --user-id alice
      flask tasks purge-user --user-id alice --yes
    """
    admin.check_database()
    counts = admin.count_user_rows(user_id)
    if not any(counts.values()):
        raise admin.OperatorError(f"user {user_id!r} has no rows (check the id): nothing to delete")
    found = ", ".join(f"{count} rows from {table}" for table, count in counts.items() if count)
    if not yes:
        click.confirm(f"Delete {found} for user {user_id!r}?", abort=True, err=True)
    removed = admin.purge_user(user_id)
    done = ", ".join(f"{count} rows from {table}" for table, count in removed.items())
    click.echo(f"Deleted {done} (user {user_id!r}).")


@tasks.command("doctor")
@operator_command
def doctor_command():
    """Check the configuration, database, schema, indexes and row security.

    Prints one line per check (ok, warn or FAIL) and exits 1 if any failed.

    \b
    Example:
      ENVIRONMENT=production DATABASE_URL=postgresql://... flask tasks doctor
    """
    failed = 0
    for check in doctor.run():
        click.echo(check.line())
        failed += check.status == doctor.FAIL
    if failed:
        raise click.ClickException(f"{failed} check(s) failed")


@tasks.command("expire-idempotency-keys")
@operator_command
def expire_idempotency_keys_command():
    """Delete the Idempotency-Key records older than 24 hours.

    Expired keys are already ignored by POST; this reclaims their rows. Safe to run
    at any time, e.g. hourly from cron.

    \b
    Example:
      flask tasks expire-idempotency-keys
    """
    admin.check_database()
    count = idempotency.expire()
    click.echo(f"Deleted {count} expired idempotency key(s).")
