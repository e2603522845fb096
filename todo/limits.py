"""Per-user rate limiting (flask-limiter), off unless RATE_LIMIT is set.

One budget per user across all of the user's endpoints (e.g. `600/minute`),
counted after authentication so the key is the token's user, never a claim an
unauthenticated caller could pick. Storage is in memory (per worker) or
RATE_LIMIT_STORAGE_URL, e.g. redis://host:6379/0, shared by all workers.
"""

from flask import g, request
from flask_limiter import Limiter

from todo.auth import authenticate
from todo.config import setting


def user_key() -> str:
    # After authenticate, g.user_id is set; only CORS preflights come without one.
    user_id = g.get("user_id")
    return f"user:{user_id}" if user_id else f"addr:{request.remote_addr}"


def _note_own_retry_after(response):
    g.own_retry_after = response.headers.get("Retry-After")
    return response


def _limiter_retry_after_only_on_429(response):
    # flask-limiter sets Retry-After (when the user's window resets) on every answer
    # it counts; only a 429 is about that window. Others keep their own (a 503's).
    if response.status_code != 429:
        own = g.get("own_retry_after")
        if own is None:
            response.headers.pop("Retry-After", None)
        else:
            response.headers["Retry-After"] = own
    return response


def init_app(app):
    rate = setting(app, "RATE_LIMIT", None)
    storage = setting(app, "RATE_LIMIT_STORAGE_URL", "memory://")
    prefix = setting(app, "RATE_LIMIT_KEY_PREFIX", "todo")
    if not rate:
        return
    # after_request hooks run in reverse order: this one after the limiter's,
    app.after_request(_limiter_retry_after_only_on_429)
    limiter = Limiter(
        user_key,
        storage_uri=storage,
        strategy="moving-window",
        key_prefix=prefix,
        headers_enabled=True,  # X-RateLimit-* on answers, and Retry-After on a 429
        # Answers go on (unlimited) while the storage is down, rather than failing.
        swallow_errors=True,
    )
    limiter.init_app(app)
    app.after_request(_note_own_retry_after)  # and this one before it.
    check = limiter.shared_limit(rate, scope="api")(lambda: None)
    # Run as a before_request of every blueprint that authenticates, right after
    # authenticate: flask-limiter's own hook runs at app level, before it.
    hooked = [funcs for funcs in app.before_request_funcs.values() if authenticate in funcs]
    if not hooked:  # never silently unlimited
        raise RuntimeError("RATE_LIMIT: no blueprint runs todo.auth.authenticate to follow")
    for funcs in hooked:
        funcs.insert(funcs.index(authenticate) + 1, check)
    app.extensions["todo.limiter"] = limiter
