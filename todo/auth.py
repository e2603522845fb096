"""Bearer-token authentication: token verification and the API blueprint's hook

Two kinds of key, both optional, both at once if configured:
- HS256/384/512 tokens are checked with JWT_SECRET (and, during a rotation,
  JWT_SECRET_PREVIOUS, accepted for verification only);
- EdDSA, ES256, ES512, RS256, PS256... tokens are checked with the identity
  provider's public keys, read from JWT_JWKS_URL (Better Auth's /api/auth/jwks).
The algorithm always comes from the allow-list, never from the token alone.
"""

import functools
import logging
import math
import threading
import time

import jwt
from flask import current_app, g, request
from flask_smorest import abort
from jwt.exceptions import PyJWKClientError

from todo.config import HMAC_ALGORITHMS, ConfigError
from todo.models import user_id_problem

MAX_TOKEN_BYTES = 8192
VERIFIED_TOKENS_KEPT = 4096  # per worker; about 1 KiB each
MAX_JWKS_KEYS = 100  # a provider publishes a handful; more is a misconfiguration

log = logging.getLogger("todo.auth")

# The curve of the EC keys that each ECDSA algorithm verifies with.
_EC_CURVES = {"ES256": "P-256", "ES256K": "secp256k1", "ES384": "P-384", "ES512": "P-521"}


class TokenError(Exception):
    """A presented token was refused; `code` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class KeysUnavailable(Exception):
    """The provider's keys cannot be fetched and no cached key fits: the token may
    be valid, so the answer is 503, not 401."""

    def __init__(self, retry_after: int):
        super().__init__("the JWKS cannot be fetched")
        self.retry_after = retry_after


def fits(jwk: dict, algorithm: str) -> bool:
    """Whether the public key `jwk` may verify a token signed with `algorithm`."""
    if jwk.get("use", "sig") != "sig":
        return False
    if "verify" not in jwk.get("key_ops", ["verify"]):
        return False
    if "alg" in jwk:  # Better Auth's keys declare it: it must name the token's exactly
        return jwk["alg"] == algorithm
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        return algorithm[:2] in ("RS", "PS")
    if kty == "EC":
        return _EC_CURVES.get(algorithm) == crv
    return kty == "OKP" and crv == "Ed25519" and algorithm == "EdDSA"


class JWKSKeys:
    """The provider's public keys by `kid`, fetched from its JWKS URL and cached.

    pyjwt's PyJWKClient does the fetching (http(s) only, no redirects, a short
    timeout). Its own cache is off because its refresh cool-down counts only
    successful fetches: while the provider is down every request would fetch
    again, and wait out the timeout. Here, instead:
    - the set is fetched on first use (the app starts while the provider is
      down), again when it is older than `lifespan`, and again when a token
      names a `kid` that is not in it (key rotation, or a provider restarted
      with new keys);
    - fetches, failed or not, are at most one per `min_interval` seconds per
      process, so a flood of tokens with random kids costs one fetch;
    - when a refresh fails the keys already known keep working (a provider
      restart does not log everyone out); a token whose key is not known then
      gets KeysUnavailable (503), because it may be valid.
    """

    def __init__(self, url: str, timeout: float, lifespan: float, min_interval: float):
        try:
            self.client = jwt.PyJWKClient(
                url,
                cache_jwk_set=False,
                timeout=timeout,
                # urllib's default agent is refused by some CDNs in front of providers
                headers={"User-Agent": "todo-api/1.0 (JWKS fetch)"},
            )
        except PyJWKClientError as error:
            raise ConfigError(f"JWT_JWKS_URL: {error}") from None
        self.lifespan = lifespan
        self.min_interval = min_interval
        self.clock = time.monotonic
        self._lock = threading.Lock()
        self._keys: dict[str, list[tuple[dict, jwt.PyJWK]]] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self.generation = 0  # bumped whenever a fetch changes the key set
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._reachable = True  # whether the last fetch succeeded

    def keys_for(self, kid: str | None, algorithm: str) -> list:
        """The public keys that may have signed a token with this header.

        Raises TokenError when no key fits, KeysUnavailable when none is known
        and the JWKS cannot be fetched."""
        found = self._find(kid, algorithm)
        if found and self._fresh():
            return found
        with self._lock:  # one fetch at a time; the others wait for its result
            found = self._find(kid, algorithm)
            if not (found and self._fresh()) and self._may_fetch():
                self._fetch()
                found = self._find(kid, algorithm)
        if found:
            return found
        if not self._reachable:
            raise KeysUnavailable(self._retry_after())
        raise TokenError("INVALID_TOKEN", "No key of the identity provider fits the token.")

    def current_generation(self) -> int:
        """The key set's generation, after the refresh its lifespan calls for (if any):
        tokens remembered as verified must not outlive a withdrawn key's refresh."""
        if self._fetched_at is not None and not self._fresh():
            with self._lock:
                if not self._fresh() and self._may_fetch():
                    self._fetch()
        return self.generation

    def _find(self, kid, algorithm):
        if kid is None:  # allowed by RFC 7515; try every key that fits
            candidates = [key for keys in self._keys.values() for key in keys]
        else:
            candidates = self._keys.get(kid, [])
        return [key.key for jwk, key in candidates if fits(jwk, algorithm)]

    def _fresh(self) -> bool:
        return self._fetched_at is not None and self.clock() - self._fetched_at < self.lifespan

    def _may_fetch(self) -> bool:
        return self._attempted_at is None or self.clock() - self._attempted_at >= self.min_interval

    def _retry_after(self) -> int:
        waited = self.clock() - (self._attempted_at or 0)
        return max(1, math.ceil(self.min_interval - waited))

    def _fetch(self) -> None:
        self._attempted_at = self.clock()
        try:
            data = self.client.fetch_data()
            entries = data.get("keys")
            if not isinstance(entries, list):
                raise PyJWKClientError("the JWKS has no list of keys")
        except (PyJWKClientError, ValueError, OSError) as error:
            self._reachable = False
            log.warning("JWKS fetch failed: %s", error)
            return
        keys, broken = usable_keys(entries)
        for kid, error in broken:
            log.warning("JWKS key %r skipped: %s", kid, error)
        if not keys:
            # A provider answering with no usable key is broken, not a proof that
            # every token is forged: keep the keys known so far.
            self._reachable = False
            log.warning("JWKS fetch failed: no usable signing key in the answer")
            return
        if _published(keys) != _published(self._keys):
            self.generation += 1  # tokens verified under the old set are checked again
        self._keys = keys
        self._fetched_at = self._attempted_at
        self._reachable = True
        log.info("JWKS fetched: %d key(s)", sum(map(len, keys.values())))


def usable_keys(entries: list) -> tuple[dict[str, list[tuple[dict, jwt.PyJWK]]], list]:
    """The keys of a JWKS's "keys" list that a token can name, by kid, and the
    (kid, error) of those with a kid that pyjwt cannot use (an unknown key type, a
    broken key). Entries without a string kid are left out: no token names them."""
    keys: dict[str, list[tuple[dict, jwt.PyJWK]]] = {}
    broken = []
    for jwk in entries[:MAX_JWKS_KEYS]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        try:
            key = jwt.PyJWK(jwk)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
            broken.append((jwk["kid"], error))
            continue
        keys.setdefault(jwk["kid"], []).append((jwk, key))
    return keys, broken


def _published(keys: dict) -> dict:
    """The JWKS entries behind parsed keys, comparable across fetches."""
    return {kid: [jwk for jwk, _ in entries] for kid, entries in keys.items()}


class TokenVerifier:
    """Verifies bearer tokens under the configured keys, algorithms and claims.

    Built once per application (so once per gunicorn worker), never per request:
    its JWKS cache lives as long as the process.
    """

    def __init__(self, config):
        self.secrets = [s for s in (config["JWT_SECRET"], config.get("JWT_SECRET_PREVIOUS")) if s]
        self.algorithms = list(config["JWT_ALGORITHMS"])
        self.issuer = config["JWT_ISSUER"]
        self.audience = config["JWT_AUDIENCE"]
        self.leeway = config["JWT_LEEWAY_SECONDS"]
        self.user_claim = config["JWT_USER_CLAIM"]
        self.options = {"require": ["exp", self.user_claim], "verify_aud": bool(self.audience)}
        # Public keys under the recommended size (RSA < 2048 bits) are refused, not
        # merely warned about on every request.
        self.public_key_options = {**self.options, "enforce_minimum_key_length": True}
        # Failures raise, so only verified tokens are kept (see verify).
        self._verified = functools.lru_cache(maxsize=VERIFIED_TOKENS_KEPT)(self._verify)
        self.jwks = None
        if config["JWT_JWKS_URL"]:
            self.jwks = JWKSKeys(
                config["JWT_JWKS_URL"],
                timeout=config.get("JWT_JWKS_TIMEOUT_SECONDS", 3),
                lifespan=config.get("JWT_JWKS_CACHE_SECONDS", 300),
                min_interval=config.get("JWT_JWKS_MIN_REFRESH_SECONDS", 10),
            )

    def signing_keys(self, header: dict, algorithm: str) -> list:
        """The keys that may have signed a token with this header, in the order to try:
        the one seam where keys are looked up."""
        if algorithm in HMAC_ALGORITHMS:
            if self.secrets:
                return self.secrets
        elif self.jwks is not None:
            kid = header.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise jwt.InvalidTokenError("kid must be a string")
            return self.jwks.keys_for(kid, algorithm)
        raise jwt.InvalidAlgorithmError("no key for this algorithm")

    def verify(self, token: str) -> str:
        """The user id that `token` proves; TokenError or KeysUnavailable otherwise.

        A client sends the same token for its whole life (15 minutes with Better
        Auth), so successes are remembered: decoding and checking a signature
        again cost a quarter of a one-task GET. Only the expiry can change, and
        it is checked on every use, and a change of the JWKS key set (a key
        withdrawn) checks every token again.
        """
        generation = self.jwks.current_generation() if self.jwks else 0
        user_id, expires_at = self._verified(token, generation)
        if time.time() > expires_at + self.leeway:  # as pyjwt decides it
            raise TokenError("TOKEN_EXPIRED", "The token has expired.")
        return user_id

    def _verify(self, token: str, generation: int = 0) -> tuple[str, float]:
        """(user id, exp) of a token checked in full. `generation`, the JWKS key set's,
        is only part of the cache key: a changed key set checks every token again."""
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise TokenError("INVALID_TOKEN", "The token is too large.")
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if not isinstance(algorithm, str) or algorithm not in self.algorithms:
                raise jwt.InvalidAlgorithmError("algorithm not allowed")
            claims = self._decode(token, algorithm, self.signing_keys(header, algorithm))
        except jwt.ExpiredSignatureError:
            raise TokenError("TOKEN_EXPIRED", "The token has expired.") from None
        except jwt.PyJWTError:  # InvalidTokenError, or InvalidKeyError for a weak key
            raise TokenError("INVALID_TOKEN", "The token is not valid.") from None
        user_id = claims[self.user_claim]
        if not isinstance(user_id, str) or user_id_problem(user_id):
            raise TokenError("INVALID_TOKEN", "The token's user claim is not a valid user id.")
        expires_at = claims["exp"]
        # A NumericDate is a JSON number (RFC 7519); pyjwt also takes "1700000000".
        # (true passes as 1: pyjwt has already called that expired.)
        if not isinstance(expires_at, int | float):
            raise TokenError("INVALID_TOKEN", "The token is not valid.")
        return user_id, expires_at

    def _decode(self, token: str, algorithm: str, keys: list) -> dict:
        """The claims, checked under the first key whose signature matches."""
        for index, key in enumerate(keys):
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    issuer=self.issuer,
                    audience=self.audience,
                    leeway=self.leeway,
                    options=self.options if isinstance(key, str) else self.public_key_options,
                )
            except jwt.InvalidSignatureError:
                if index == len(keys) - 1:
                    raise
        raise jwt.InvalidKeyError("no key")


def unauthorized(code: str, message: str, presented: bool):
    """Abort with a 401 and its bearer challenge (RFC 6750)."""
    challenge = 'Bearer error="invalid_token"' if presented else "Bearer"
    abort(401, message=message, error_code=code, headers={"WWW-Authenticate": challenge})


def bearer_token() -> str:
    """The request's bearer token; a 401 AUTHENTICATION_REQUIRED when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        unauthorized(
            "AUTHENTICATION_REQUIRED", "Send an Authorization: Bearer <token> header.", False
        )
    return token


def authenticate():
    """before_request of the user-scoped blueprint: 401, then 403, else sets g.user_id."""
    if request.method == "OPTIONS":  # CORS preflights carry no token
        return
    token = bearer_token()
    try:
        user_id = current_app.extensions["todo.tokens"].verify(token)
    except TokenError as error:
        unauthorized(error.code, error.message, True)
    except KeysUnavailable as error:
        abort(
            503,
            message="The identity provider's keys cannot be fetched; retry later.",
            headers={"Retry-After": str(error.retry_after)},
        )
    if user_id != request.view_args["user_id"]:
        abort(403)
    g.user_id = user_id
