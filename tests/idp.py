"""A fake identity provider for tests: keys as Better Auth makes them, a JWKS served
over HTTP on 127.0.0.1, and tokens minted (or forged) the way attackers and Better
Auth's jwt plugin do."""

import base64
import hashlib
import hmac
import json
import secrets
import socket
import string
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://app.example.com"  # Better Auth sets iss and aud to its base URL
AUDIENCE = "https://app.example.com"
ALPHANUMERIC = string.ascii_letters + string.digits


def better_auth_user_id():
    """An id as Better Auth generates them: 32 random characters from [A-Za-z0-9]."""
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(32))


class SigningKey:
    """A private key, its algorithm and kid, and the public JWK a JWKS lists."""

    def __init__(self, algorithm, private_key, kid=None, **jwk_extra):
        self.algorithm = algorithm
        self.private_key = private_key
        self.kid = kid or secrets.token_urlsafe(8)
        public = private_key.public_key()
        to_jwk = {"EdDSA": OKPAlgorithm, "ES": ECAlgorithm, "RS": RSAAlgorithm, "PS": RSAAlgorithm}
        algorithm_class = to_jwk.get(algorithm) or to_jwk[algorithm[:2]]
        self.jwk = {**algorithm_class.to_jwk(public, as_dict=True), "kid": self.kid}
        self.jwk["alg"] = algorithm  # Better Auth's keys carry kid and alg, no use
        self.jwk.update(jwk_extra)
        self.jwk = {k: v for k, v in self.jwk.items() if v is not None}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def with_kid(self, kid=None, **jwk_extra):
        """The same private key under another kid (or other JWK members)."""
        return SigningKey(self.algorithm, self.private_key, kid, **jwk_extra)

    def token(self, user_id="alice", /, *, ttl=900, headers=None, algorithm=None, **claims):
        """A token as Better Auth mints it: sub, iss, aud, iat, a 15-minute exp, profile
        fields; `claims` override or add (None removes one)."""
        now = datetime.now(UTC)
        payload = {
            "sub": user_id,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + timedelta(seconds=ttl),
            "name": "Alice Example",
            "email": "alice@example.com",
            "emailVerified": True,
            **claims,
        }
        payload = {key: value for key, value in payload.items() if value is not None}
        return jwt.encode(
            payload,
            self.private_key,
            algorithm=algorithm or self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )


def generate(algorithm, **jwk_extra):
    """A fresh signing key for `algorithm` (EdDSA, ES256, ES384, ES512, RS256, PS256)."""
    if algorithm == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm.startswith("ES"):
        curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}[algorithm]
        key = ec.generate_private_key(curve())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(algorithm, key, **jwk_extra)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, sign=lambda signing_input: b"") -> str:
    """A token assembled by hand, as an attacker would: `sign` gets the signing input."""
    segments = [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode())]
    signing_input = ".".join(segments).encode()
    return ".".join([*segments, _b64(sign(signing_input))])


def hs256_with(secret: bytes):
    """A signer computing HMAC-SHA256 with `secret` (pyjwt refuses PEM keys as secrets)."""
    return lambda signing_input: hmac.new(secret, signing_input, hashlib.sha256).digest()


def claims(user_id="alice", ttl=900, **extra):
    """A Better Auth-shaped payload with integer times, for forged tokens."""
    now = int(datetime.now(UTC).timestamp())
    payload = {"sub": user_id, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl}
    payload.update(extra)
    return {key: value for key, value in payload.items() if value is not None}


class JWKSServer:
    """Serves {"keys": [...]} at /api/auth/jwks on 127.0.0.1, from a thread.

    `keys` may be changed while it runs (rotation); `fetches` counts the GETs;
    `status` other than 200 makes it answer that status with no keys (and a
    `Location` of `redirect_to`, if set); `body`, if set, is sent instead of the keys."""

    def __init__(self, keys=()):
        self.keys = [key.jwk for key in keys]
        self.fetches = 0
        self.status = 200
        self.body = None
        self.redirect_to = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.fetches += 1
                if self.path != "/api/auth/jwks" or server.status != 200:
                    self.send_response(404 if server.status == 200 else server.status)
                    if server.redirect_to:
                        self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.body or json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/api/auth/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def publish(self, *keys):
        self.keys.extend(key.jwk for key in keys)

    def replace(self, *keys):
        self.keys = [key.jwk for key in keys]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url():
    """A JWKS URL where nothing listens: every fetch is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/auth/jwks"


class SilentServer:
    """Accepts connections and never answers: a provider that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/api/auth/jwks"

    def close(self):
        self.sock.close()


class FakeClock:
    """Stands in for time.monotonic in JWKSKeys, so cool-downs pass without sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds
