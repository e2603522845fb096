"""Development tokens signed with JWT_SECRET, for `flask tasks token`, seed and bench"""

from datetime import UTC, datetime, timedelta

import jwt

TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class TokenRefused(Exception):
    """This configuration may not mint tokens; the message says why, in one line."""


def parse_ttl(value: str) -> timedelta:
    """`900s`, `15m`, `1h`, `7d` or plain seconds; ValueError otherwise."""
    number, unit = value[:-1], value[-1:]
    if unit.isdigit():
        number, unit = value, "s"
    if unit not in TTL_UNITS or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"{value!r} is not a duration like 900s, 15m, 1h or 7d")
    return timedelta(seconds=int(number) * TTL_UNITS[unit])


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
    if not 1 <= len(user_id) <= 255:
        raise TokenRefused("--user-id must be 1 to 255 characters")
    now = datetime.now(UTC)
    claims = {config["JWT_USER_CLAIM"]: user_id, "iat": now, "exp": now + ttl}
    if config["JWT_ISSUER"]:
        claims["iss"] = config["JWT_ISSUER"]
    if config["JWT_AUDIENCE"]:
        claims["aud"] = config["JWT_AUDIENCE"]
    return jwt.encode(claims, config["JWT_SECRET"], algorithm=algorithm)
