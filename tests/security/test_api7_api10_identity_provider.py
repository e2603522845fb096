"""OWASP API7 (server-side request forgery) and API10 (unsafe consumption of APIs),
for the one outside service the API talks to: the identity provider's JWKS

The API fetches only the configured JWKS URL (never a URL named by a token),
follows no redirect, and treats whatever comes back as untrusted: a broken or
hostile answer is a 503 or a 401, never a 500, a hang, or an accepted token.
"""

import json

import pytest

from tests.idp import JWKSServer, generate
from tests.test_jwks import assert_refused, assert_unavailable, call, jwks_config


@pytest.fixture
def servers():
    started = []

    def start(keys=()):
        server = JWKSServer(keys)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_urls_in_a_token_are_never_fetched(make_app, servers, header):
    real, attacker = generate("EdDSA"), generate("EdDSA")
    provider, evil = servers([real]), servers([attacker])
    app = make_app(**jwks_config(provider.url))

    assert_refused(call(app, attacker.token(headers={header: evil.url})))
    assert evil.fetches == 0


def test_redirects_from_the_jwks_url_are_not_followed(make_app, servers):
    attacker = generate("EdDSA")
    provider, evil = servers(), servers([attacker])
    provider.status, provider.redirect_to = 302, evil.url
    app = make_app(**jwks_config(provider.url))

    assert_unavailable(call(app, attacker.token()))
    assert evil.fetches == 0


@pytest.mark.parametrize(
    "body",
    [b"<html>not json</html>", b"[1, 2]", b'{"keys": "none"}', b'{"keys": {}}', b"\xff\xfe",
     b'{"keys": [' + b"1," * 10 + b"1]}", b""],
)  # fmt: skip
def test_a_broken_jwks_is_503_never_500(make_app, servers, body):
    provider = servers()
    provider.body = body or b" "
    app = make_app(**jwks_config(provider.url))
    assert_unavailable(call(app, generate("EdDSA").token()))


def test_unusable_keys_are_skipped_and_usable_ones_kept(make_app, servers):
    good = generate("EdDSA")
    provider = servers([good])
    provider.keys += [
        {"kty": "RSA", "kid": "broken", "n": "AQAB", "e": "!!"},
        {"kty": "OKP", "crv": "X25519", "kid": "not-for-signing", "x": "AAAA"},
        {"kty": "oct", "kid": "symmetric", "k": "c2VjcmV0", "alg": "HS256"},
        {"kid": "no-kty"},
        {"kty": "EC", "crv": "P-256"},  # no kid
        "not an object",
    ]
    app = make_app(**jwks_config(provider.url))

    assert call(app, good.token()).status_code == 200
    # a symmetric key published in the JWKS never verifies anything
    hs = generate("EdDSA").with_kid("symmetric")
    assert_refused(call(app, hs.token()))


def test_a_jwks_with_no_usable_key_is_an_outage_not_a_verdict(make_app, servers):
    known = generate("EdDSA")
    provider = servers([known])
    app = make_app(**jwks_config(provider.url))
    assert call(app, known.token()).status_code == 200

    provider.body = json.dumps({"keys": [{"kty": "XYZ", "kid": "k"}]}).encode()
    assert_unavailable(call(app, generate("EdDSA").with_kid("k").token()))
    assert call(app, known.token()).status_code == 200  # the known key is kept


def test_oversized_jwks_is_capped(make_app, servers):
    provider = servers([generate("EdDSA") for _ in range(3)])
    wanted = generate("EdDSA")
    provider.keys = provider.keys * 60 + [wanted.jwk]  # 181 keys; only 100 are read
    app = make_app(**jwks_config(provider.url))
    assert_refused(call(app, wanted.token()))
