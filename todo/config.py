"""Configuration read from the environment when the application is created"""

import ipaddress
import os
import re
import secrets
import tempfile
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import sqlalchemy as sa

ENVIRONMENTS = ("development", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}  # as Python's logging takes them
LOG_FORMATS = ("json", "text")
CHOICES = {"ENVIRONMENT": ENVIRONMENTS, "LOG_LEVEL": LOG_LEVELS, "LOG_FORMAT": LOG_FORMATS}
MIN_SECRET_BYTES = 32
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
JWKS_ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")
# Every asymmetric algorithm that pyjwt verifies; JWT_ALGORITHMS may name any of these.
ASYMMETRIC_ALGORITHMS = (
    "EdDSA", "ES256", "ES256K", "ES384", "ES512",
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
)  # fmt: skip


class ConfigError(RuntimeError):
    """The configuration cannot run; the message says why, in one line."""


DEFAULT_PORTS = {"http": 80, "https": 443}
HOST_NAME = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")


def http_url(url: str) -> SplitResult | None:
    """`url` split, when it is http(s)://host[:port]...; None for anything else,
    a bad [IPv6] host or port included (urlsplit and .port raise on those)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018
    except ValueError:
        return None
    return parts if parts.scheme in ("http", "https") and parts.hostname else None


def origin_problem(origin: str) -> str | None:
    """Why `origin` is not an origin such as https://app.example.com:8443, or None.

    Wildcards and patterns are refused: flask-cors would read `https://*.example.com`
    as a regular expression matched at the start only, which admits
    `https://xexample.com.attacker.net` and not `https://app.example.com`.
    """
    parts = http_url(origin)
    if parts is None or parts.netloc.endswith(":"):
        if origin == "*":
            return "'*' lets every site read the answers"
        return f"{origin!r} is not scheme://host[:port]"
    if parts.path or parts.query or parts.fragment or parts.username:
        return f"{origin!r} must have no path, query or credentials (an origin)"
    # Browsers send an origin in one spelling: write it so, or it never matches.
    if parts.port == DEFAULT_PORTS[parts.scheme]:
        return f"{origin!r}: browsers send it without the default port :{parts.port}"
    return _host_problem(origin, parts.hostname)


def _host_problem(origin: str, host: str) -> str | None:
    if HOST_NAME.fullmatch(host):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if not isinstance(address, ipaddress.IPv6Address):  # IPv4 is a HOST_NAME
        return f"{origin!r}: the host must be a name or an address, not a pattern"
    if address.compressed != host:
        return f"{origin!r}: browsers send the address as [{address.compressed}]"
    return None


def _int(environ, name, default, minimum):
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return integer(raw, minimum)
    except ValueError as error:
        raise ConfigError(f"{name} {error}") from None


def _number(environ, name, default):
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{name} must be a non-negative number, not {raw!r}")
    return value


def flag(raw: str) -> bool:
    """An on/off setting: off when empty, 0, false, no, off or none (any case)."""
    return raw.strip().lower() not in ("", "0", "false", "no", "off", "none")


def integer(raw: str, minimum: int = 0) -> int:
    """A setting's integer, at least `minimum`; ValueError saying what it must be."""
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ValueError(f"must be at least {minimum}, not {raw!r}")
    return value


def setting(app, name, default, parse=str):
    """app.config[name], else the environment's value read by `parse`, else `default`;
    kept in app.config. For the settings of the optional parts (metrics, proxies,
    rate limits), read when they are set up."""
    if name not in app.config:
        raw = os.environ.get(name, "").strip()
        try:
            app.config[name] = parse(raw) if raw else default
        except ValueError as error:
            raise ConfigError(f"{name} {error}") from None
    return app.config[name]


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    return LOG_LEVEL_ALIASES.get(level, level)


def _list(raw):
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


def from_env(environ=os.environ) -> dict:
    """The settings that the environment gives, with the defaults of API.md."""
    return {
        # Empty is refused, unlike the other variables: this switch turns every
        # production refusal on, and an empty value (docker run -e ENVIRONMENT=)
        # would otherwise quietly undo the image's ENVIRONMENT=production.
        "ENVIRONMENT": environ.get("ENVIRONMENT", "development").strip().lower(),
        "DATABASE_URL": environ.get("DATABASE_URL") or None,
        "SECRET_KEY": environ.get("SECRET_KEY") or None,
        "JWT_SECRET": environ.get("JWT_SECRET") or None,
        "JWT_SECRET_PREVIOUS": environ.get("JWT_SECRET_PREVIOUS") or None,
        "JWT_JWKS_URL": environ.get("JWT_JWKS_URL") or None,
        "JWT_JWKS_TIMEOUT_SECONDS": _number(environ, "JWT_JWKS_TIMEOUT_SECONDS", 3),
        "JWT_JWKS_CACHE_SECONDS": _number(environ, "JWT_JWKS_CACHE_SECONDS", 300),
        "JWT_JWKS_MIN_REFRESH_SECONDS": _number(environ, "JWT_JWKS_MIN_REFRESH_SECONDS", 10),
        "JWT_ALGORITHMS": _list(environ.get("JWT_ALGORITHMS")) or None,
        "JWT_ISSUER": environ.get("JWT_ISSUER") or None,
        "JWT_AUDIENCE": environ.get("JWT_AUDIENCE") or None,
        "JWT_USER_CLAIM": environ.get("JWT_USER_CLAIM") or "sub",
        "JWT_LEEWAY_SECONDS": _int(environ, "JWT_LEEWAY_SECONDS", 30, 0),
        "CORS_ORIGINS": _list(environ.get("CORS_ORIGINS")),
        "MAX_CONTENT_LENGTH": _int(environ, "MAX_CONTENT_LENGTH", 65536, 1),
        "LOG_LEVEL": _log_level(environ.get("LOG_LEVEL") or "INFO"),
        "LOG_FORMAT": (environ.get("LOG_FORMAT") or "json").lower(),
        "DB_POOL_SIZE": _int(environ, "DB_POOL_SIZE", 10, 0),
        "DB_MAX_OVERFLOW": _int(environ, "DB_MAX_OVERFLOW", 20, -1),
        "DB_POOL_RECYCLE": _int(environ, "DB_POOL_RECYCLE", 1800, -1),
        "DB_POOL_TIMEOUT": _int(environ, "DB_POOL_TIMEOUT", 10, 0),
        "DB_CONNECT_TIMEOUT": _int(environ, "DB_CONNECT_TIMEOUT", 5, 0),
        "DB_STATEMENT_TIMEOUT_MS": _int(environ, "DB_STATEMENT_TIMEOUT_MS", 5000, 0),
        "PAGE_CACHE_MB": _number(environ, "PAGE_CACHE_MB", 48),
        "DB_PREPARED_STATEMENTS": flag(environ.get("DB_PREPARED_STATEMENTS", "").strip() or "true"),
    }


def normalize_database_url(url: str) -> str:
    """Map postgres:// and postgresql:// to psycopg 3, which is the installed driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_options(config: dict, url: sa.URL) -> dict:
    """Pool and driver settings for the engine of `url`."""
    # No pool_pre_ping: todo/extensions.py checks at checkout, without a round trip,
    # that the server has not closed the connection (restarts, failovers, Neon's
    # computes coming back).
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
    try:
        if not path.exists():
            _write_secret(path)
        secret = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(f"cannot keep a development secret in {path}: {reason}") from None
    if not secret:
        raise ConfigError(f"{path} is empty: delete it for a new secret, or set JWT_SECRET")
    return secret


def _write_secret(path: Path) -> None:
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


def _finalize_tokens(config: dict, env: str, instance_path: str):
    """Check the JWT_* settings and fill the algorithm allow-list; returns the secret."""
    secret = config["JWT_SECRET"]
    jwks_url = config["JWT_JWKS_URL"]
    if not secret and not jwks_url:
        if env != "development":
            raise ConfigError("set JWT_SECRET or JWT_JWKS_URL: no token can be verified")
        secret = config["JWT_SECRET"] = development_secret(instance_path)
    if config.get("JWT_SECRET_PREVIOUS") and not secret:
        raise ConfigError("JWT_SECRET_PREVIOUS is only read beside JWT_SECRET")
    if env == "production":
        for name in ("JWT_SECRET", "JWT_SECRET_PREVIOUS"):
            value = config.get(name)
            if value and len(value.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(f"{name} must be at least {MIN_SECRET_BYTES} bytes")
    if jwks_url and not http_url(jwks_url):
        raise ConfigError(f"JWT_JWKS_URL must be an http(s) URL, not {jwks_url!r}")
    config["JWT_ALGORITHMS"] = _token_algorithms(config, secret, jwks_url)
    return secret


def _token_algorithms(config: dict, secret, jwks_url) -> list[str]:
    """JWT_ALGORITHMS, or the default for the configured keys; refuses what they cannot verify."""
    algorithms = config["JWT_ALGORITHMS"]
    if isinstance(algorithms, str):
        algorithms = _list(algorithms)
    if not algorithms:
        algorithms = [*(["HS256"] if secret else []), *(JWKS_ALGORITHMS if jwks_url else [])]
    unknown = [a for a in algorithms if a not in HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS]
    if unknown:
        raise ConfigError(f"JWT_ALGORITHMS: unsupported algorithm(s) {', '.join(unknown)}")
    usable = [
        a
        for a in algorithms
        if (a in HMAC_ALGORITHMS and secret) or (a in ASYMMETRIC_ALGORITHMS and jwks_url)
    ]
    if not usable:
        raise ConfigError(
            "JWT_ALGORITHMS names no algorithm the configured keys can verify "
            "(HS* need JWT_SECRET, the others JWT_JWKS_URL)"
        )
    # pyjwt warns on every token when an HMAC key is shorter than the hash.
    for algorithm in set(algorithms) & {"HS384", "HS512"}:
        needed = int(algorithm[2:]) // 8
        for name in ("JWT_SECRET", "JWT_SECRET_PREVIOUS"):
            value = config.get(name)
            if value and len(value.encode()) < needed:
                raise ConfigError(f"{algorithm} needs a {name} of at least {needed} bytes")
    return list(algorithms)


def _database_url(config: dict, production: bool) -> sa.URL:
    """DATABASE_URL (SQLite in the instance folder by default) as a psycopg 3 or
    sqlite3 URL; ConfigError for anything else."""
    if not config["DATABASE_URL"]:
        if production:
            raise ConfigError("DATABASE_URL is required when ENVIRONMENT=production")
        config["DATABASE_URL"] = "sqlite:///todo.sqlite3"
    try:
        url = sa.make_url(normalize_database_url(config["DATABASE_URL"]))
    except (sa.exc.ArgumentError, ValueError):  # not a URL, a bad port or [IPv6] host
        url = None
    if url is None or url.get_backend_name() not in ("postgresql", "sqlite"):
        # Without the URL itself: it may hold a password.
        raise ConfigError("DATABASE_URL must be a postgresql:// or sqlite:/// URL")
    if url.get_driver_name() not in ("psycopg", "pysqlite"):  # the installed drivers
        raise ConfigError(
            "DATABASE_URL: the driver must be psycopg (postgresql://),"
            f" not {url.get_driver_name()!r}"
        )
    if production and url.get_backend_name() == "sqlite":
        raise ConfigError("ENVIRONMENT=production needs PostgreSQL, not SQLite")
    return url


def finalize(config: dict, instance_path: str) -> None:
    """Check the settings, fill the derived ones, and refuse what cannot run."""
    for name, choices in CHOICES.items():
        if config[name] not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {config[name]!r}")
    env = config["ENVIRONMENT"]
    production = env == "production"

    url = _database_url(config, production)
    config["SQLALCHEMY_DATABASE_URI"] = url
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **engine_options(config, url),
        **config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }

    problems = [problem for problem in map(origin_problem, config["CORS_ORIGINS"]) if problem]
    if problems:
        raise ConfigError(f"CORS_ORIGINS: {'; '.join(problems)}")
    secret = _finalize_tokens(config, env, instance_path)  # may write the development key

    # Signs the list cursors. Every worker must share it, so it comes from the
    # environment: SECRET_KEY, else the token secret.
    if not config["SECRET_KEY"]:
        if secret:
            config["SECRET_KEY"] = "cursor:" + secret
        elif env == "development":
            config["SECRET_KEY"] = development_secret(instance_path)
        else:
            raise ConfigError(
                "set SECRET_KEY (it signs list cursors) when only JWT_JWKS_URL is set"
            )
