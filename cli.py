"""Operator commands: `flask tasks ...`"""

from datetime import UTC, datetime, timedelta

import click
import jwt
from flask import current_app
from flask.cli import AppGroup

tasks = AppGroup("tasks", help="Seed, load-check and administer the task API.")

TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(value: str) -> timedelta:
    number, unit = value[:-1], value[-1:]
    if unit.isdigit():
        number, unit = value, "s"
    if unit not in TTL_UNITS or not number.isdigit() or int(number) <= 0:
        raise click.BadParameter(f"{value!r} is not a duration like 900s, 15m, 1h or 7d")
    return timedelta(seconds=int(number) * TTL_UNITS[unit])


@tasks.command("token")
@click.option("--user-id", required=True, help="The token's subject (the user id).")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 900s, 15m, 1h, 7d.")
@click.option("--curl", is_flag=True, help="Print a ready-to-run curl line instead.")
def token_command(user_id, ttl, curl):
    """Mint a development token signed with JWT_SECRET.

    \b
    Example:
      export TOKEN=$(flask tasks token --user-id alice)
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/alice/tasks
    """
    config = current_app.config
    if config["ENVIRONMENT"] == "production":
        raise click.ClickException("refusing to mint tokens when ENVIRONMENT=production")
    if not config["JWT_SECRET"]:
        raise click.ClickException("no JWT_SECRET: only the identity provider can issue tokens")
    if not 1 <= len(user_id) <= 255:
        raise click.ClickException("--user-id must be 1 to 255 characters")
    now = datetime.now(UTC)
    claims = {current_app.config["JWT_USER_CLAIM"]: user_id, "iat": now, "exp": now + parse_ttl(ttl)}
    if config["JWT_ISSUER"]:
        claims["iss"] = config["JWT_ISSUER"]
    if config["JWT_AUDIENCE"]:
        claims["aud"] = config["JWT_AUDIENCE"]
    algorithm = next((a for a in config["JWT_ALGORITHMS"] if a.startswith("HS")), None)
    if algorithm is None:
        raise click.ClickException("JWT_ALGORITHMS allows no HS256/384/512 algorithm")
    token = jwt.encode(claims, config["JWT_SECRET"], algorithm=algorithm)
    if curl:
        click.echo(
            f"curl -H 'Authorization: Bearer {token}' http://127.0.0.1:8000/api/{user_id}/tasks"
        )
    else:
        click.echo(token)


# --- Idempotency keys (issue 4) -------------------------------------------------


@tasks.command("expire-idempotency-keys")
def expire_idempotency_keys_command():
    """Delete the Idempotency-Key records older than 24 hours.

    Expired keys are already ignored by POST; this reclaims their rows. Safe to run
    at any time, e.g. hourly from cron.
    """
    from todo import idempotency, rls  # noqa: PLC0415

    with rls.bypass():
        count = idempotency.expire()
    click.echo(f"Deleted {count} expired idempotency key(s).")
