"""Development tokens signed with JWT_SECRET, for `flask tasks token`, seed and bench"""

import re
from datetime import UTC, datetime, timedelta

import jwt

from todo.models import user_id_problem

TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = timedelta(days=3650)


class TokenRefused(Exception):
    """This configuration may not mint tokens; the message says why, in one line."""


def parse_ttl(value: str) -> timedelta:
    """`900s`, `15m`, `1h`, `7d` or plain seconds, up to MAX_TTL; ValueError otherwise."""
    # ASCII digits only, and few of them: str.isdigit() takes "²", which int() refuses,
    # and a lifetime past year 9999 cannot be added to a datetime.
    match = re.fullmatch(r"([0-9]{1,12})([smhd]?)", value)
    seconds = int(match[1]) * TTL_UNITS[match[2] or "s"] if match else 0
    if not 0 < seconds <= MAX_TTL.total_seconds():
        raise ValueError(f"{value!r} is not a duration like 900s, 15m, 1h or 7d (at most 3650d)")
    return timedelta(seconds=seconds)


def signing_algorithm(config) -> str:
    """The HS algorithm tokens are signed with; TokenRefused when none may be minted."""
    if config["ENVIRONMENT"] == "production":
        raise TokenRefused("refusing to mint tokens when ENVIRONMENT=production")
    if not config["JWT_SECRET"]:
        raise TokenRefused("no JWT_SECRET: only the identity provider can issue tokens")
    algorithm = next((a for a in config["JWT_ALGORITHMS"] if a.startswith("HS")), None)
    if algorithm is None:
        raise TokenRefused("JWT_ALGORITHMS allows no HS256/384/512 algorithm")
    return algorithm


def mint(config, user_id: str, ttl: timedelta) -> str:
    """A token for `user_id` that this configuration's API accepts for `ttl`."""
    algorithm = signing_algorithm(config)
    problem = user_id_problem(user_id)  # the API would refuse the token's user
    if problem:
        raise TokenRefused(f"--user-id must be {problem}")
    now = datetime.now(UTC)
    claims = {config["JWT_USER_CLAIM"]: user_id, "iat": now, "exp": now + ttl}
    if config["JWT_ISSUER"]:
        claims["iss"] = config["JWT_ISSUER"]
    if config["JWT_AUDIENCE"]:
        claims["aud"] = config["JWT_AUDIENCE"]
    return jwt.encode(claims, config["JWT_SECRET"], algorithm=algorithm)
