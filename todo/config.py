"""Configuration read from the environment when the application is created"""

import os
import secrets
import tempfile
from pathlib import Path

import sqlalchemy as sa

ENVIRONMENTS = ("development", "test", "production")
MIN_SECRET_BYTES = 32
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
JWKS_ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")


class ConfigError(RuntimeError):
    """The configuration cannot run; the message says why, in one line."""


def _int(environ, name, default):
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None


def _list(raw):
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


def from_env(environ=os.environ) -> dict:
    """The settings that the environment gives, with the defaults of API.md."""
    return {
        "ENVIRONMENT": environ.get("ENVIRONMENT", "development").strip().lower(),
        "DATABASE_URL": environ.get("DATABASE_URL") or None,
        "SECRET_KEY": environ.get("SECRET_KEY") or None,
        "JWT_SECRET": environ.get("JWT_SECRET") or None,
        "JWT_JWKS_URL": environ.get("JWT_JWKS_URL") or None,
        "JWT_ALGORITHMS": _list(environ.get("JWT_ALGORITHMS")) or None,
        "JWT_ISSUER": environ.get("JWT_ISSUER") or None,
        "JWT_AUDIENCE": environ.get("JWT_AUDIENCE") or None,
        "JWT_USER_CLAIM": environ.get("JWT_USER_CLAIM") or "sub",
        "JWT_LEEWAY_SECONDS": _int(environ, "JWT_LEEWAY_SECONDS", 30),
        "CORS_ORIGINS": _list(environ.get("CORS_ORIGINS")),
        "MAX_CONTENT_LENGTH": _int(environ, "MAX_CONTENT_LENGTH", 65536),
        "LOG_LEVEL": (environ.get("LOG_LEVEL") or "INFO").upper(),
        "LOG_FORMAT": (environ.get("LOG_FORMAT") or "json").lower(),
        "DB_POOL_SIZE": _int(environ, "DB_POOL_SIZE", 10),
        "DB_MAX_OVERFLOW": _int(environ, "DB_MAX_OVERFLOW", 20),
        "DB_POOL_RECYCLE": _int(environ, "DB_POOL_RECYCLE", 1800),
        "DB_POOL_TIMEOUT": _int(environ, "DB_POOL_TIMEOUT", 10),
        "DB_CONNECT_TIMEOUT": _int(environ, "DB_CONNECT_TIMEOUT", 5),
        "DB_STATEMENT_TIMEOUT_MS": _int(environ, "DB_STATEMENT_TIMEOUT_MS", 5000),
        "DB_PREPARED_STATEMENTS": environ.get("DB_PREPARED_STATEMENTS", "").lower()
        not in ("0", "false", "no", "off"),
    }


def normalize_database_url(url: str) -> str:
    """Map postgres:// and postgresql:// to psycopg 3, which is the installed driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_options(config: dict, url: sa.URL) -> dict:
    """Pool and driver settings for the engine of `url`."""
    options = {
        # Errors (and so the 500s' stack traces in the log) show the SQL without
        # its values, which are users' text.
        "hide_parameters": True,
        "pool_size": config["DB_POOL_SIZE"],
        "max_overflow": config["DB_MAX_OVERFLOW"],
        "pool_recycle": config["DB_POOL_RECYCLE"],
        "pool_timeout": config["DB_POOL_TIMEOUT"],
    }
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            # In memory: one static connection shared by every thread
            # (Flask-SQLAlchemy's default), so there is no pool to size.
            return {"connect_args": {"timeout": 15}}
        options["connect_args"] = {"timeout": 15}
        return options
    connect_args = {
        "connect_timeout": config["DB_CONNECT_TIMEOUT"],
        "options": f"-c statement_timeout={config['DB_STATEMENT_TIMEOUT_MS']}",
    }
    # PgBouncer in transaction mode (Neon's -pooler hosts) hands each transaction
    # another server session, where psycopg's prepared statements do not exist.
    behind_pooler = "-pooler" in (url.host or "")
    if behind_pooler or not config["DB_PREPARED_STATEMENTS"]:
        connect_args["prepare_threshold"] = None
    if behind_pooler:
        # PgBouncer refuses startup parameters it does not track.
        del connect_args["options"]
    options["connect_args"] = connect_args
    return options


def development_secret(instance_path: str) -> str:
    """A random secret kept in the instance folder, so development needs no set-up."""
    path = Path(instance_path) / "dev-jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside (mode 0600), then linked into place: processes starting
        # together (gunicorn workers) agree on one secret and never read half a file.
        fd, temp = tempfile.mkstemp(prefix=".dev-jwt-secret.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            os.link(temp, path)
        except FileExistsError:
            pass  # another process won; use its secret
        finally:
            os.unlink(temp)
    return path.read_text().strip()


def finalize(config: dict, instance_path: str) -> None:
    """Check the settings, fill the derived ones, and refuse what cannot run."""
    env = config["ENVIRONMENT"]
    if env not in ENVIRONMENTS:
        raise ConfigError(f"ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    production = env == "production"

    if not config["DATABASE_URL"]:
        if production:
            raise ConfigError("DATABASE_URL is required when ENVIRONMENT=production")
        config["DATABASE_URL"] = "sqlite:///todo.sqlite3"
    url = sa.make_url(normalize_database_url(config["DATABASE_URL"]))
    if production and url.get_backend_name() == "sqlite":
        raise ConfigError("ENVIRONMENT=production needs PostgreSQL, not SQLite")
    config["SQLALCHEMY_DATABASE_URI"] = url
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **engine_options(config, url),
        **config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }

    secret = config["JWT_SECRET"]
    if not secret and not config["JWT_JWKS_URL"]:
        if env != "development":
            raise ConfigError("set JWT_SECRET or JWT_JWKS_URL: no token can be verified")
        secret = config["JWT_SECRET"] = development_secret(instance_path)
    if secret and len(secret.encode()) < MIN_SECRET_BYTES and production:
        raise ConfigError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")

    if not config["JWT_ALGORITHMS"]:
        config["JWT_ALGORITHMS"] = [
            *(["HS256"] if secret else []),
            *(JWKS_ALGORITHMS if config["JWT_JWKS_URL"] else []),
        ]

    # Signs the list cursors. Every worker must share it, so it comes from the
    # environment: SECRET_KEY, else the token secret.
    if not config["SECRET_KEY"]:
        if secret:
            config["SECRET_KEY"] = "cursor:" + secret
        elif env == "development":
            config["SECRET_KEY"] = development_secret(instance_path)
        else:
            raise ConfigError("set SECRET_KEY (it signs list cursors) when only JWT_JWKS_URL is set")
