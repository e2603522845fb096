"""Logs never carry a token, a secret or an Authorization header

A full request cycle (every operation, good and bad tokens, HS and JWKS, an
unreachable provider, a 500) runs at DEBUG; every line written to stdout/stderr
and every log record, with all its attributes, is then searched.
"""

import logging

import pytest
from flask import request

from tests.conftest import TEST_SECRET, make_token
from tests.idp import JWKSServer, claims, closed_port_url, forge, generate
from tests.test_jwks import jwks_config

PREVIOUS_SECRET = "previous-secret-being-rotated-out-0123456789"


@pytest.fixture
def provider():
    server = JWKSServer([generate("EdDSA")])
    yield server
    server.stop()


def test_no_token_secret_or_authorization_in_any_log_line(make_app, provider, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    key = generate("EdDSA")
    provider.publish(key)
    settings = jwks_config(
        provider.url,
        JWT_SECRET=TEST_SECRET,
        JWT_SECRET_PREVIOUS=PREVIOUS_SECRET,
        JWT_ISSUER=None,
        JWT_AUDIENCE=None,
        LOG_LEVEL="DEBUG",
        TESTING=False,
        PROPAGATE_EXCEPTIONS=False,
    )
    app = make_app(**settings)

    @app.get("/api/<user_id>/boom")
    def boom(user_id):
        raise RuntimeError(f"failed for {request.path}")

    tokens = {
        "hs": make_token("alice"),
        "previous": make_token("alice", secret=PREVIOUS_SECRET),
        "jwks": key.token("alice"),
        "bob": key.token("bob"),
        "expired": make_token("alice", ttl=-600),
        "forged": make_token("alice", secret="an-attackers-secret-of-32-bytes-or-more"),
        "none": forge({"alg": "none"}, claims()),
        "unknown kid": key.with_kid("nowhere").token(),
    }
    client = app.test_client()

    def send(method, path, token, **kwargs):
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "cycle-1"}
        return client.open(path, method=method, headers=headers, **kwargs)

    task = send("POST", "/api/alice/tasks", tokens["hs"], json={"title": "t"}).json["data"]
    url = f"/api/alice/tasks/{task['id']}"
    assert send("GET", "/api/alice/tasks?q=t", tokens["jwks"]).status_code == 200
    assert send("GET", url, tokens["previous"]).status_code == 200
    assert send("PUT", url, tokens["jwks"], json={"title": "u"}).status_code == 200
    assert send("PATCH", f"{url}/complete", tokens["jwks"]).status_code == 200
    assert send("GET", "/api/alice/tasks", tokens["bob"]).status_code == 403
    for name in ("expired", "forged", "none", "unknown kid"):
        assert send("GET", url, tokens[name]).status_code == 401, name
    assert send("POST", "/api/alice/tasks", tokens["jwks"], json={"bad": 1}).status_code == 400
    assert send("GET", "/api/alice/boom", tokens["hs"]).status_code == 500
    assert send("DELETE", url, tokens["hs"]).status_code == 204
    client.get("/api/alice/tasks", headers={"Authorization": "Basic YWxpY2U6aHVudGVyMg=="})

    down = make_app(**{**settings, "JWT_JWKS_URL": closed_port_url()})
    down_client = down.test_client()
    response = down_client.get(
        "/api/alice/tasks", headers={"Authorization": f"Bearer {tokens['jwks']}"}
    )
    assert response.status_code == 503

    captured = capsys.readouterr()
    records = "\n".join(repr(vars(record)) + record.getMessage() for record in caplog.records)
    logged = "\n".join([captured.out, captured.err, records])
    assert "cycle-1" in logged and "JWKS fetch failed" in logged  # the logs were captured
    assert "RuntimeError" in logged  # the 500's trace is in the log (only there)

    forbidden = {f"token {name}": token for name, token in tokens.items()}
    forbidden |= {
        f"signature {name}": t.rsplit(".", 1)[1] for name, t in tokens.items() if t[-1] != "."
    }
    forbidden |= {
        "secret": TEST_SECRET,
        "previous secret": PREVIOUS_SECRET,
        "cursor key": app.config["SECRET_KEY"],
        "basic credentials": "YWxpY2U6aHVudGVyMg==",
        "bearer": "Bearer ",
        "authorization header": "Authorization",
    }
    leaks = [name for name, value in forbidden.items() if value and value in logged]
    assert not leaks, leaks
