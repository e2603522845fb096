"""Identity-provider tokens through a JWKS (Better Auth's jwt plugin), end to end

A JWKS is served over HTTP on 127.0.0.1 with generated Ed25519, P-256, P-521 and
RSA keys; the app fetches it as it would fetch Better Auth's /api/auth/jwks.
"""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import TEST_SECRET, base_config, make_token
from tests.idp import (
    AUDIENCE,
    ISSUER,
    FakeClock,
    JWKSServer,
    SigningKey,
    SilentServer,
    better_auth_user_id,
    claims,
    closed_port_url,
    forge,
    generate,
    hs256_with,
)
from todo import create_app
from todo.config import ConfigError

INVALID = 'Bearer error="invalid_token"'
CURSOR_KEY = "cursor-signing-key-for-the-jwks-tests-0123456789"


@pytest.fixture(scope="session")
def keys():
    """One key per algorithm Better Auth can use, generated once per run."""
    return {
        algorithm: generate(algorithm)
        for algorithm in ("EdDSA", "ES256", "ES512", "RS256", "PS256", "ES384")
    }


@pytest.fixture
def provider(keys):
    server = JWKSServer(keys[a] for a in ("EdDSA", "ES256", "ES512", "RS256", "PS256"))
    yield server
    server.stop()


def jwks_config(url, **overrides):
    """The settings of a deploy next to Better Auth: JWKS only, iss and aud checked."""
    return {
        "JWT_SECRET": None,
        "JWT_JWKS_URL": url,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "SECRET_KEY": CURSOR_KEY,
        "JWT_JWKS_MIN_REFRESH_SECONDS": 0,
        **overrides,
    }


@pytest.fixture
def jwks_app(make_app, provider):
    return make_app(**jwks_config(provider.url))


def call(app, token, user="alice", method="get", path="", **kwargs):
    client = app.test_client()
    return getattr(client, method)(
        f"/api/{user}/tasks{path}", headers={"Authorization": f"Bearer {token}"}, **kwargs
    )


def assert_refused(response, code="INVALID_TOKEN"):
    assert response.status_code == 401, response.json
    assert response.json["error"]["code"] == code
    assert response.headers["WWW-Authenticate"] == INVALID
    assert response.headers["Content-Type"] == "application/json"


def clock_of(app):
    clock = FakeClock()
    app.extensions["todo.tokens"].jwks.clock = clock
    return clock


# Accepted


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "ES512", "RS256", "PS256"])
def test_token_of_each_algorithm_works_end_to_end(jwks_app, keys, algorithm):
    user = better_auth_user_id()
    token = keys[algorithm].token(user)

    created = call(jwks_app, token, user, "post", json={"title": f"signed with {algorithm}"})
    assert created.status_code == 201, created.json
    assert created.json["data"]["user_id"] == user

    listed = call(jwks_app, token, user)
    assert listed.status_code == 200
    assert [task["title"] for task in listed.json["data"]] == [f"signed with {algorithm}"]


def test_better_auth_token_with_profile_fields_and_uuid_ids(jwks_app, keys):
    # Better Auth can be configured to use UUIDs or serial numbers as ids.
    for user in (better_auth_user_id(), "5f1b8e1e-3c4d-4f6a-9b0c-1d2e3f405162", "42"):
        token = keys["EdDSA"].token(user, image=None, createdAt="2026-01-01T00:00:00.000Z")
        assert call(jwks_app, token, user).status_code == 200


def test_jwk_without_alg_fits_by_key_type(make_app, keys):
    ed = keys["EdDSA"].with_kid("no-alg-ed", alg=None)
    rsa = keys["RS256"].with_kid("no-alg-rsa", alg=None)
    server = JWKSServer([ed, rsa])
    try:
        app = make_app(**jwks_config(server.url))
        assert call(app, ed.token()).status_code == 200
        assert call(app, rsa.token()).status_code == 200
        assert call(app, rsa.token(algorithm="PS256")).status_code == 200  # RSA fits RS* and PS*
        assert_refused(call(app, rsa.token(algorithm="RS384")))  # off the default list
    finally:
        server.stop()


def test_es256_token_naming_an_rsa_key_without_alg_is_401_not_500(make_app, keys):
    rsa_key = keys["RS256"].with_kid("no-alg-rsa", alg=None)
    server = JWKSServer([rsa_key])
    try:
        app = make_app(**jwks_config(server.url))
        assert_refused(call(app, keys["ES256"].with_kid(rsa_key.kid).token()))
    finally:
        server.stop()


def test_token_without_kid_is_verified_by_the_published_key_that_fits(jwks_app, provider, keys):
    signer = generate("EdDSA")
    provider.publish(signer)  # listed after keys["EdDSA"], which is tried first and fails
    assert call(jwks_app, jwt.encode(claims(), signer.private_key, "EdDSA")).status_code == 200
    first = jwt.encode(claims(), keys["EdDSA"].private_key, "EdDSA")
    assert call(jwks_app, first).status_code == 200


def test_token_without_kid_finds_the_ec_key_of_its_curve_among_others(make_app, keys):
    p521 = keys["ES512"].with_kid("p-521", alg=None)
    p256 = keys["ES256"].with_kid("p-256", alg=None)
    server = JWKSServer([p521, p256])  # the P-521 key must be passed over, not tried
    try:
        app = make_app(**jwks_config(server.url))
        assert call(app, jwt.encode(claims(), p256.private_key, "ES256")).status_code == 200
    finally:
        server.stop()


def _without_kid(jwk):
    return {name: value for name, value in jwk.items() if name != "kid"}


def test_jwks_entries_without_a_string_kid_are_skipped_not_500(make_app, keys):
    good, unnamed = generate("EdDSA"), generate("EdDSA")
    server = JWKSServer()
    server.keys = [
        _without_kid(unnamed.jwk),
        {**unnamed.jwk, "kid": 7},
        {**unnamed.jwk, "kid": ["a", "list"]},
        good.jwk,
    ]
    try:
        app = make_app(**jwks_config(server.url))
        assert call(app, good.token()).status_code == 200
        # left out entirely: not even a token without kid is checked against them
        assert_refused(call(app, jwt.encode(claims(), unnamed.private_key, "EdDSA")))
    finally:
        server.stop()


def test_app_starts_and_fetches_nothing_until_a_token_arrives(make_app, provider, keys):
    app = make_app(**jwks_config(provider.url))
    assert provider.fetches == 0

    for _ in range(3):
        assert call(app, keys["EdDSA"].token()).status_code == 200
    assert provider.fetches == 1  # then served from the cache


def test_secret_and_jwks_configured_at_once(make_app, provider, keys):
    app = make_app(
        **jwks_config(provider.url, JWT_SECRET=TEST_SECRET, JWT_ISSUER=None, JWT_AUDIENCE=None)
    )

    assert app.config["JWT_ALGORITHMS"] == ["HS256", "EdDSA", "ES256", "ES512", "RS256", "PS256"]
    assert call(app, make_token("alice")).status_code == 200
    assert call(app, keys["ES256"].token()).status_code == 200
    # HS256 signed with the provider's public key as the secret: algorithm confusion
    confused = forge(
        {"alg": "HS256", "typ": "JWT", "kid": keys["ES256"].kid},
        claims(),
        hs256_with(keys["ES256"].public_pem()),
    )
    assert_refused(call(app, confused))


# Rotation, outages and the refresh rate limit


def test_key_added_after_start_is_accepted(jwks_app, provider):
    first = generate("EdDSA")
    provider.publish(first)
    assert call(jwks_app, first.token()).status_code == 200

    rotated = generate("EdDSA")
    provider.publish(rotated)  # the provider rotates: a new kid, published after start
    assert call(jwks_app, rotated.token()).status_code == 200
    assert call(jwks_app, first.token()).status_code == 200  # the old key still listed


def test_provider_restarted_with_new_keys(jwks_app, provider, keys):
    assert call(jwks_app, keys["EdDSA"].token()).status_code == 200
    new = generate("EdDSA")
    provider.replace(new)

    assert call(jwks_app, new.token()).status_code == 200
    # the refresh dropped the old keys: tokens they signed are no longer valid
    assert_refused(call(jwks_app, keys["EdDSA"].token()))


def test_refreshes_are_rate_limited_and_honour_the_interval(make_app, provider, keys):
    app = make_app(**jwks_config(provider.url, JWT_JWKS_MIN_REFRESH_SECONDS=30))
    clock = clock_of(app)
    assert call(app, keys["EdDSA"].token()).status_code == 200
    assert provider.fetches == 1

    for _ in range(25):  # a flood of tokens naming random kids
        forged = keys["EdDSA"].with_kid(secrets.token_hex(8)).token()
        assert_refused(call(app, forged))
    assert provider.fetches == 1

    rotated = generate("EdDSA")
    provider.publish(rotated)
    clock.advance(29)
    assert_refused(call(app, rotated.token()))  # still within the interval: not fetched
    assert provider.fetches == 1
    clock.advance(1)
    assert call(app, rotated.token()).status_code == 200
    assert provider.fetches == 2


def test_cache_lifespan_triggers_a_refresh(make_app, provider, keys):
    app = make_app(**jwks_config(provider.url, JWT_JWKS_CACHE_SECONDS=300))
    clock = clock_of(app)
    assert call(app, keys["EdDSA"].token()).status_code == 200
    clock.advance(299)
    assert call(app, keys["EdDSA"].token()).status_code == 200
    assert provider.fetches == 1
    clock.advance(2)
    assert call(app, keys["EdDSA"].token()).status_code == 200
    assert provider.fetches == 2


def assert_unavailable(response, retry_after=1):
    """A 503 for keys that cannot be fetched; `retry_after` is what is left of
    JWT_JWKS_MIN_REFRESH_SECONDS (at least 1: jwks_config sets 0)."""
    assert response.status_code == 503, response.json
    assert response.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert response.json["error"]["message"] == (
        "The identity provider's keys cannot be fetched; retry later."
    )
    assert response.headers["Retry-After"] == str(retry_after)
    assert "WWW-Authenticate" not in response.headers


def test_provider_down_is_503_with_retry_after(make_app, keys):
    app = make_app(**jwks_config(closed_port_url(), JWT_JWKS_MIN_REFRESH_SECONDS=10))

    response = call(app, keys["EdDSA"].token())

    assert_unavailable(response, retry_after=10)
    assert response.headers["Content-Type"] == "application/json"


def test_provider_that_never_answers_is_503_not_a_hang(make_app, keys):
    silent = SilentServer()
    try:
        app = make_app(**jwks_config(silent.url, JWT_JWKS_TIMEOUT_SECONDS=0.3))
        assert_unavailable(call(app, keys["EdDSA"].token()))
    finally:
        silent.close()


def test_provider_error_status_is_503(make_app, provider, keys):
    provider.status = 500
    app = make_app(**jwks_config(provider.url))
    assert_unavailable(call(app, keys["EdDSA"].token()))


@pytest.mark.parametrize("published", ["a broken key", "keys without kid"])
def test_jwks_with_no_usable_key_is_503_not_401(make_app, keys, published):
    server = JWKSServer()
    if published == "a broken key":  # with the token's kid: pyjwt cannot read it
        server.keys = [{"kty": "oct", "kid": keys["EdDSA"].kid}]
    else:
        server.keys = [_without_kid(keys[algorithm].jwk) for algorithm in ("EdDSA", "ES256")]
    try:
        app = make_app(**jwks_config(server.url))
        assert_unavailable(call(app, keys["EdDSA"].token()))
    finally:
        server.stop()


def test_outage_keeps_cached_keys_and_recovers(make_app, provider, keys):
    app = make_app(**jwks_config(provider.url, JWT_JWKS_MIN_REFRESH_SECONDS=10))
    clock = clock_of(app)
    assert call(app, keys["EdDSA"].token()).status_code == 200

    provider.status = 503  # the provider goes down; the cache then expires
    clock.advance(400)
    assert call(app, keys["EdDSA"].token()).status_code == 200  # known key: still served
    assert provider.fetches == 2
    rotated = generate("EdDSA")
    provider.publish(rotated)
    # unknown key: it may be valid; the failed fetch was just now, 10 s to wait
    assert_unavailable(call(app, rotated.token()), retry_after=10)
    assert provider.fetches == 2  # the failed fetch counts for the rate limit too

    provider.status = 200  # back: the next fetch after the interval finds the new key
    clock.advance(10)
    assert call(app, rotated.token()).status_code == 200
    assert provider.fetches == 3


def test_unknown_kid_is_401_again_once_the_provider_is_back(make_app, provider, keys):
    app = make_app(**jwks_config(provider.url, JWT_JWKS_MIN_REFRESH_SECONDS=10))
    clock = clock_of(app)
    provider.status = 503
    assert_unavailable(call(app, keys["EdDSA"].token()), retry_after=10)

    provider.status = 200
    clock.advance(10)
    assert_refused(call(app, keys["EdDSA"].with_kid("no-such-kid").token()))
    assert call(app, keys["EdDSA"].token()).status_code == 200


# Rejections: each with its exact code and WWW-Authenticate


def _now():
    return int(datetime.now(UTC).timestamp())


def _stranger(keys):
    """Another private key that claims the kid of a listed one."""
    return generate("EdDSA", kid=keys["EdDSA"].kid)


REJECTIONS = {
    "alg none": lambda k: forge({"alg": "none", "typ": "JWT", "kid": k["EdDSA"].kid}, claims()),
    "alg None": lambda k: forge({"alg": "None", "kid": k["EdDSA"].kid}, claims()),
    "alg off the list (ES384)": lambda k: k["ES384"].token(),
    "HS256 with the public key as secret": lambda k: forge(
        {"alg": "HS256", "typ": "JWT", "kid": k["EdDSA"].kid},
        claims(),
        hs256_with(k["EdDSA"].public_pem()),
    ),
    "kid points nowhere": lambda k: k["EdDSA"].with_kid("no-such-kid").token(),
    "no kid, no key fits": lambda k: jwt.encode(claims(), _stranger(k).private_key, "EdDSA"),
    "kid not a string": lambda k: forge(
        {"alg": "EdDSA", "kid": 7}, claims(), k["EdDSA"].private_key.sign
    ),
    "kid a list": lambda k: forge(
        {"alg": "EdDSA", "kid": [k["EdDSA"].kid]}, claims(), k["EdDSA"].private_key.sign
    ),
    "kid an object": lambda k: forge(
        {"alg": "EdDSA", "kid": {"kid": k["EdDSA"].kid}}, claims(), k["EdDSA"].private_key.sign
    ),
    "JWK alg does not fit the token": lambda k: k["PS256"].token(algorithm="RS256"),
    "JWK of another key type": lambda k: forge(
        {"alg": "ES256", "kid": k["EdDSA"].kid}, claims(), lambda _: b"\x00" * 64
    ),
    "bad signature under a listed kid": lambda k: _stranger(k).token(),
    "jku pointing at the attacker's JWKS": lambda k: generate("EdDSA").token(
        headers={"jku": "http://127.0.0.1:9/jwks"}
    ),
    "embedded jwk header": lambda k: (a := generate("EdDSA")).token(headers={"jwk": a.jwk}),
    "wrong issuer": lambda k: k["EdDSA"].token(iss="https://evil.example.com"),
    "no issuer": lambda k: k["EdDSA"].token(iss=None),
    "wrong audience": lambda k: k["EdDSA"].token(aud="https://other.example.com"),
    "no audience": lambda k: k["EdDSA"].token(aud=None),
    "no exp": lambda k: k["EdDSA"].token(exp=None),
    "no sub": lambda k: k["EdDSA"].token(sub=None),
    "nbf in the future": lambda k: k["EdDSA"].token(nbf=_now() + 120),
    "iat in the future": lambda k: k["EdDSA"].token(iat=_now() + 120),
    "empty sub": lambda k: k["EdDSA"].token(""),
    "sub over 255 characters": lambda k: k["EdDSA"].token("a" * 256),
    "sub not a string": lambda k: k["EdDSA"].token(sub=42),
    "malformed": lambda k: "not.a.token",
    "over 8 KiB": lambda k: k["EdDSA"].token(padding="x" * 9000),
    "truncated signature": lambda k: k["EdDSA"].token()[:-10],
}


@pytest.mark.parametrize("name", REJECTIONS)
def test_rejected_tokens_are_invalid_token(jwks_app, keys, provider, name):
    provider.publish(keys["ES384"])  # listed, but ES384 is not on the allow-list
    assert_refused(call(jwks_app, REJECTIONS[name](keys)))


def test_rsa_key_under_2048_bits_is_refused(make_app):
    weak = SigningKey("RS256", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    server = JWKSServer([weak])
    try:
        app = make_app(**jwks_config(server.url))
        with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):  # pyjwt signs, and warns
            token = weak.token()
        assert_refused(call(app, token))
    finally:
        server.stop()


@pytest.mark.parametrize(
    "not_for_verifying",
    [{"use": "enc"}, {"key_ops": ["encrypt"]}],  # key_ops alone, without "use"
    ids=["use enc", "key_ops encrypt"],
)
def test_key_declared_for_encryption_is_refused(make_app, keys, not_for_verifying):
    enc = keys["EdDSA"].with_kid("enc-key", **not_for_verifying)
    server = JWKSServer([enc])
    try:
        app = make_app(**jwks_config(server.url))
        assert_refused(call(app, enc.token()))
    finally:
        server.stop()


def test_only_the_first_100_published_keys_are_read(make_app, keys):
    named = [keys["EdDSA"].with_kid(f"key-{n}") for n in range(101)]
    server = JWKSServer(named)
    try:
        app = make_app(**jwks_config(server.url))
        assert call(app, named[0].token()).status_code == 200
        assert call(app, named[99].token()).status_code == 200
        assert_refused(call(app, named[100].token()))
    finally:
        server.stop()


def test_expired_token_is_token_expired(jwks_app, keys):
    token = keys["EdDSA"].token(ttl=-120)
    assert_refused(call(jwks_app, token), code="TOKEN_EXPIRED")


def test_leeway_applies_to_exp_nbf_and_iat(jwks_app, keys):
    now = datetime.now(UTC)
    within = {
        "exp": now - timedelta(seconds=10),
        "nbf": now + timedelta(seconds=10),
        "iat": now + timedelta(seconds=10),
    }
    token = keys["EdDSA"].token(**within)
    assert call(jwks_app, token).status_code == 200


def test_user_id_of_255_characters_is_accepted(jwks_app, keys):
    user = "u" * 255
    assert call(jwks_app, keys["EdDSA"].token(user), user).status_code == 200


def test_valid_token_for_another_user_is_403(jwks_app, keys):
    response = call(jwks_app, keys["EdDSA"].token("bob"), "alice")
    assert response.status_code == 403
    assert response.json["error"]["code"] == "FORBIDDEN"


def test_custom_user_claim(make_app, provider, keys):
    app = make_app(**jwks_config(provider.url, JWT_USER_CLAIM="user_id"))
    assert call(app, keys["EdDSA"].token("ignored", user_id="carol"), "carol").status_code == 200
    assert_refused(call(app, keys["EdDSA"].token("carol")))  # no user_id claim


# Shared-secret rotation: JWT_SECRET_PREVIOUS verifies, never signs anything

NEW_SECRET = "the-new-secret-after-rotation-0123456789abcdef"


def test_previous_secret_is_accepted_during_rotation(make_app):
    app = make_app(JWT_SECRET=NEW_SECRET, JWT_SECRET_PREVIOUS=TEST_SECRET)

    assert call(app, make_token("alice", secret=NEW_SECRET)).status_code == 200
    assert call(app, make_token("alice", secret=TEST_SECRET)).status_code == 200
    other = make_token("alice", secret="yet-another-secret-of-at-least-32-bytes")
    assert_refused(call(app, other))
    assert_refused(call(app, make_token("alice", secret=TEST_SECRET, ttl=-120)), "TOKEN_EXPIRED")


def test_old_secret_is_refused_once_the_rotation_is_over(make_app):
    app = make_app(JWT_SECRET=NEW_SECRET)
    assert_refused(call(app, make_token("alice", secret=TEST_SECRET)))


# Configuration


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"JWT_ALGORITHMS": ["none"]}, "unsupported algorithm"),
        ({"JWT_ALGORITHMS": ["HS256", "XS999"]}, "unsupported algorithm"),
        ({"JWT_ALGORITHMS": ["EdDSA"]}, "names no algorithm"),  # no JWKS to verify it
        ({"JWT_ALGORITHMS": ["HS256", "HS512"]}, "HS512 needs a JWT_SECRET of at least 64"),
        (
            {
                "JWT_SECRET": None,
                "JWT_SECRET_PREVIOUS": TEST_SECRET,
                "JWT_JWKS_URL": "https://app.example.com/api/auth/jwks",
            },
            "only read beside",
        ),
        ({"JWT_JWKS_URL": "file:///etc/passwd"}, "http(s) URL"),
        ({"JWT_JWKS_URL": "https://"}, "http(s) URL"),
        (
            {
                "ENVIRONMENT": "production",
                "DATABASE_URL": "postgresql://todo@127.0.0.1:1/todo",
                "JWT_SECRET_PREVIOUS": "short",
            },
            "JWT_SECRET_PREVIOUS must be at least 32 bytes",
        ),
    ],
)
def test_incoherent_token_settings_are_refused(settings, message):
    # refused while the app is built, before any database is touched
    with pytest.raises(ConfigError, match=re.escape(message)):
        create_app({**base_config("sqlite://"), "SECRET_KEY": CURSOR_KEY, **settings})


def test_jwks_only_defaults_to_better_auth_algorithms(make_app, provider):
    app = make_app(**jwks_config(provider.url))
    assert app.config["JWT_ALGORITHMS"] == ["EdDSA", "ES256", "ES512", "RS256", "PS256"]


def test_hs256_token_is_refused_when_only_jwks_is_configured(jwks_app):
    assert_refused(call(jwks_app, make_token("alice", iss=ISSUER, aud=AUDIENCE)))


def test_pyjwt_refuses_what_the_forged_tokens_do(keys):
    # Guard on the fixtures: pyjwt itself will not sign HS256 with a PEM key, which is
    # why the confusion tokens are forged by hand.
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode({"sub": "alice"}, keys["EdDSA"].public_pem(), algorithm="HS256")


# End to end: gunicorn started as the README says, a token minted as Better Auth does


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url, process, log):
    for _ in range(300):  # up to 30 s for the workers to boot
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer at {url}:\n{log.read_text()}")


def _request(method, url, token=None, body=None, extra_headers=None):
    headers = {"Content-Type": "application/json", **(extra_headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            content = error.read()
        try:
            body = json.loads(content or b"null")
        except ValueError:  # not from the app (gunicorn's own refusals are not JSON)
            body = content
        return error.code, dict(error.headers), body


def test_better_auth_tokens_against_gunicorn_as_the_readme_starts_it(
    backend, database_url, keys, tmp_path
):
    provider = JWKSServer([keys["EdDSA"], keys["ES256"]])
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "FLASK_"))},
        # production needs PostgreSQL; the SQLite half runs the same server in development
        "ENVIRONMENT": "production" if backend == "postgresql" else "development",
        "DATABASE_URL": database_url,
        "JWT_JWKS_URL": provider.url,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "CORS_ORIGINS": "https://app.example.com",
        "SECRET_KEY": CURSOR_KEY,
        "PORT": str(port),
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 2",
    }
    log = tmp_path / "gunicorn.log"
    root = Path(__file__).resolve().parent.parent
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(gunicorn), "wsgi:app"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_serving(f"{base}/healthz", process, log)
        user = better_auth_user_id()
        api = f"{base}/api/{user}/tasks"

        status, headers, body = _request("POST", api, keys["EdDSA"].token(user), {"title": "t"})
        assert status == 201, (body, log.read_text())
        assert body["data"]["user_id"] == user
        for _ in range(4):  # both workers, each with its own JWKS cache
            status, _, body = _request("GET", api, keys["ES256"].token(user))
            assert status == 200 and body["meta"]["total"] == 1

        status, headers, body = _request("GET", api)
        assert (status, headers["WWW-Authenticate"]) == (401, "Bearer")
        status, _, body = _request("GET", api, keys["EdDSA"].token(user, ttl=-120))
        assert (status, body["error"]["code"]) == (401, "TOKEN_EXPIRED")
        status, _, _ = _request("GET", api, keys["EdDSA"].token("someone-else"))
        assert status == 403

        # a huge header is refused by the server before the app (gunicorn's field limit)
        padding = {"X-Padding": "x" * 20_000}
        status, _, body = _request("GET", api, keys["EdDSA"].token(user), None, padding)
        assert status == 431, body
        assert b"<h1><p>Request Header Fields Too Large</p></h1>" in body, body
        small = {"X-Padding": "x" * 1_000}
        assert _request("GET", api, keys["EdDSA"].token(user), None, small)[0] == 200
        assert _request("GET", api, keys["EdDSA"].token(user))[0] == 200  # still serving
    finally:
        process.terminate()
        process.wait(timeout=30)
        provider.stop()
