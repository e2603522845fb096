"""Bearer-token authentication: token verification and the API blueprint's hook"""

import jwt
from flask import current_app, g, request
from flask_smorest import abort

from todo.config import HMAC_ALGORITHMS
from todo.models import USER_ID_MAX

MAX_TOKEN_BYTES = 8192


class TokenError(Exception):
    """A presented token was refused; `code` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class TokenVerifier:
    """Verifies bearer tokens under the configured keys, algorithms and claims."""

    def __init__(self, config):
        self.secret = config["JWT_SECRET"]
        self.algorithms = list(config["JWT_ALGORITHMS"])
        self.issuer = config["JWT_ISSUER"]
        self.audience = config["JWT_AUDIENCE"]
        self.leeway = config["JWT_LEEWAY_SECONDS"]
        self.user_claim = config["JWT_USER_CLAIM"]
        self.options = {"require": ["exp", self.user_claim], "verify_aud": bool(self.audience)}

    def signing_key(self, token: str, algorithm: str):
        """The key that must have signed `token`: the one seam where keys are looked up."""
        if algorithm in HMAC_ALGORITHMS and self.secret:
            return self.secret
        raise jwt.InvalidAlgorithmError("no key for this algorithm")

    def verify(self, token: str) -> str:
        """The user id that `token` proves; TokenError otherwise."""
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise TokenError("INVALID_TOKEN", "The token is too large.")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm not in self.algorithms:
                raise jwt.InvalidAlgorithmError("algorithm not allowed")
            claims = jwt.decode(
                token,
                self.signing_key(token, algorithm),
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options=self.options,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("TOKEN_EXPIRED", "The token has expired.") from None
        except jwt.InvalidTokenError:
            raise TokenError("INVALID_TOKEN", "The token is not valid.") from None
        user_id = claims[self.user_claim]
        if not isinstance(user_id, str) or not 1 <= len(user_id) <= USER_ID_MAX:
            raise TokenError("INVALID_TOKEN", "The token's user claim is not a valid user id.")
        return user_id


def _unauthorized(code: str, message: str, presented: bool):
    challenge = 'Bearer error="invalid_token"' if presented else "Bearer"
    abort(401, message=message, error_code=code, headers={"WWW-Authenticate": challenge})


def authenticate():
    """before_request of the user-scoped blueprint: 401, then 403, else sets g.user_id."""
    if request.method == "OPTIONS":  # CORS preflights carry no token
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        _unauthorized(
            "AUTHENTICATION_REQUIRED", "Send an Authorization: Bearer <token> header.", False
        )
    try:
        user_id = current_app.extensions["todo.tokens"].verify(token)
    except TokenError as error:
        _unauthorized(error.code, error.message, True)
    if user_id != request.view_args["user_id"]:
        abort(403)
    g.user_id = user_id
