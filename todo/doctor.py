"""Deployment diagnosis for `flask tasks doctor`: one line per check

A check is OK, WARN (worth a look, not a failure) or FAIL; checks that need the
database are skipped, with a FAIL of their own, when it does not answer.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
import urllib3
from flask import current_app

from todo.admin import database_error
from todo.auth import fits, usable_keys
from todo.config import MIN_SECRET_BYTES
from todo.extensions import db
from todo.schema_version import expected_heads, schema_state

OK, WARN, FAIL = "ok", "warn", "FAIL"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
MIN_DISTINCT_SECRET_CHARS = 10
JWKS_TIMEOUT = urllib3.Timeout(connect=3, read=5)


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<18} {self.detail}"


def check_token_key(config) -> Check:
    secret, jwks = config["JWT_SECRET"], config["JWT_JWKS_URL"]
    if not secret and not jwks:
        return Check(FAIL, "token key", "neither JWT_SECRET nor JWT_JWKS_URL is set")
    if not secret:
        return Check(OK, "token key", "JWKS only (no shared secret)")
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        return Check(FAIL, "token key", f"JWT_SECRET is {size} bytes; use at least 32")
    if len(set(secret)) < MIN_DISTINCT_SECRET_CHARS:
        return Check(FAIL, "token key", "JWT_SECRET is long but repetitive; use a random one")
    return Check(OK, "token key", f"JWT_SECRET of {size} bytes")


def check_jwks(config) -> Check:
    url = config["JWT_JWKS_URL"]
    if not url:
        return Check(OK, "jwks", "not configured")
    try:
        response = urllib3.request("GET", url, timeout=JWKS_TIMEOUT, retries=False)
    except urllib3.exceptions.HTTPError as error:
        return Check(FAIL, "jwks", f"{url} unreachable: {type(error).__name__}")
    if response.status != 200:
        return Check(FAIL, "jwks", f"{url} answered {response.status}")
    try:
        entries = json.loads(response.data)["keys"]
    except (ValueError, KeyError, TypeError):
        entries = None
    if not isinstance(entries, list):
        return Check(FAIL, "jwks", f"{url} did not answer a JWK set")
    algorithms = config["JWT_ALGORITHMS"]
    usable = sum(  # as the API reads and picks them
        any(fits(jwk, algorithm) for algorithm in algorithms)
        for found in usable_keys(entries)[0].values()
        for jwk, _ in found
    )
    if not usable:
        return Check(
            FAIL,
            "jwks",
            f"{url}: no usable key of {len(entries)} (each needs a kid, a key pyjwt can"
            " read, and to verify an algorithm of JWT_ALGORITHMS)",
        )
    return Check(OK, "jwks", f"{url}: {usable} usable key(s) of {len(entries)}")


def check_cors(config) -> Check:
    origins = config["CORS_ORIGINS"]
    if not origins:
        return Check(OK, "cors", "no origin allowed (browsers cannot call the API cross-site)")
    return Check(OK, "cors", ", ".join(origins))  # each one an origin (todo/config.py)


def check_environment(config) -> Check:
    env = config["ENVIRONMENT"]
    if env != "production":
        return Check(WARN, "environment", f"ENVIRONMENT={env}: not production settings")
    problems = []
    if config.get("DEBUG"):
        problems.append("DEBUG is on")
    if config["LOG_FORMAT"] != "json":
        problems.append("LOG_FORMAT is not json")
    insecure = [
        origin
        for origin in config["CORS_ORIGINS"]
        if origin.startswith("http://") and urlsplit(origin).hostname not in LOCAL_HOSTS
    ]
    if insecure:
        problems.append(f"plain-http CORS origins {', '.join(insecure)}")
    url = config["SQLALCHEMY_DATABASE_URI"]
    if not _local(url) and url.query.get("sslmode") not in ("require", "verify-ca", "verify-full"):
        problems.append("remote database without sslmode=require")
    if problems:
        return Check(WARN, "environment", "production, but " + "; ".join(problems))
    return Check(OK, "environment", "production")


def _local(url) -> bool:
    """Whether every host the URL names is this machine: its host, and libpq's `?host=`
    and `?hostaddr=` (lists, socket folders, SQLAlchemy's `host:port`), which psycopg
    takes too."""
    named = [url.host or ""]
    for key in ("host", "hostaddr"):
        value = url.query.get(key, ())
        named.extend(value if isinstance(value, tuple) else [value])
    hosts = [host for entry in named for host in entry.split(",")]
    return all(_local_host(host) for host in hosts)


def _local_host(host: str) -> bool:
    if host.startswith("/"):  # a socket folder
        return True
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host  # host:port
    return name in ("", *LOCAL_HOSTS)


def check_database() -> Check:
    started = time.perf_counter()
    try:
        with db.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
            version = connection.dialect.server_version_info
    except sa.exc.SQLAlchemyError as error:
        return Check(FAIL, "database", database_error(error))
    elapsed = (time.perf_counter() - started) * 1000
    name = db.engine.dialect.name
    shown = ".".join(str(part) for part in version or ())
    return Check(OK, "database", f"{name} {shown} answered in {elapsed:.0f} ms")


def check_schema() -> Check:
    reason = schema_state()
    if reason:
        return Check(FAIL, "schema", reason)
    heads = sorted(expected_heads(current_app._get_current_object()))
    return Check(OK, "schema", f"at the latest migration ({', '.join(heads)})")


def check_indexes() -> Check:
    inspector = sa.inspect(db.engine)
    missing, wrong = [], []
    for table in db.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            missing.append(f"table {table.name}")
            continue
        actual = {
            index["name"]: index["column_names"] for index in inspector.get_indexes(table.name)
        }
        for index in table.indexes:
            columns = [column.name for column in index.columns]
            if index.name not in actual:
                missing.append(index.name)
            elif actual[index.name] != columns:
                wrong.append(f"{index.name} on {actual[index.name]}, expected {columns}")
    if missing or wrong:
        return Check(FAIL, "indexes", "; ".join([f"missing {name}" for name in missing] + wrong))
    count = sum(len(table.indexes) for table in db.metadata.sorted_tables)
    return Check(OK, "indexes", f"all {count} expected indexes present")


def check_row_security() -> Check:
    """Row-level security (migration 0003) on and forced on every table of user rows,
    and a database role that does not bypass it."""
    if db.engine.dialect.name != "postgresql":
        return Check(OK, "row security", f"not available on {db.engine.dialect.name}")
    tables = [table.name for table in db.metadata.sorted_tables if "user_id" in table.c]
    with db.engine.connect() as connection:
        states = {
            name: connection.execute(
                sa.text(
                    "SELECT c.relrowsecurity AND c.relforcerowsecurity"
                    " AND EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid)"
                    " FROM pg_class c WHERE c.oid = to_regclass(:name)"
                ),
                {"name": name},
            ).scalar()
            for name in tables
        }
        role, bypasses, inherits_operator = connection.execute(
            sa.text(
                "SELECT rolname, rolsuper OR rolbypassrls,"
                " EXISTS (SELECT FROM pg_roles o WHERE o.rolname = current_database()"
                " || '_operator' AND pg_has_role(current_user, o.oid, 'USAGE'))"
                " FROM pg_roles WHERE rolname = current_user"
            )
        ).one()
    off = [name for name, on in states.items() if not on]
    if off:
        return Check(
            FAIL,
            "row security",
            f"not enabled and forced on {', '.join(off)}: run flask db upgrade",
        )
    # First: pg_has_role is true for a superuser, whatever its grants.
    if bypasses:
        return Check(
            WARN,
            "row security",
            f"role {role!r} is a superuser or BYPASSRLS and ignores it:"
            " connect as the tables' non-superuser owner",
        )
    if inherits_operator:
        return Check(
            FAIL,
            "row security",
            f"role {role!r} inherits the operator role, whose policy admits every row:"
            " grant it WITH INHERIT FALSE (see migration 0003)",
        )
    return Check(OK, "row security", f"enabled and forced on {', '.join(tables)}")


def run() -> Iterator[Check]:
    """Every check, in order, as each completes."""
    config = current_app.config
    yield check_environment(config)
    yield check_token_key(config)
    yield check_jwks(config)
    yield check_cors(config)
    database = check_database()
    yield database
    if database.status == FAIL:
        for name in ("schema", "indexes", "row security"):
            yield Check(FAIL, name, "skipped: the database does not answer")
        return
    yield check_schema()
    yield check_indexes()
    yield check_row_security()
