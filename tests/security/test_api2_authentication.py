"""OWASP API2, broken authentication: every operation refuses every bad token first

The token matrix itself (each way a token can be wrong, HS and JWKS) is in
tests/test_auth.py and tests/test_jwks.py; here each kind of refusal is sent to
every operation, which must answer 401 before looking at the task or the body
and change nothing.
"""

import uuid

import pytest

from tests.conftest import TEST_SECRET, make_token
from tests.idp import claims, forge, hs256_with
from tests.security.conftest import OPERATION_IDS, operations, send

BAD_AUTHORIZATIONS = {
    "missing": (None, "AUTHENTICATION_REQUIRED"),
    "basic scheme": ("Basic YWxpY2U6c2VjcmV0", "AUTHENTICATION_REQUIRED"),
    "bearer without token": ("Bearer ", "AUTHENTICATION_REQUIRED"),
    "malformed": ("Bearer not-a-jwt", "INVALID_TOKEN"),
    "alg none": (f"Bearer {forge({'alg': 'none'}, claims())}", "INVALID_TOKEN"),
    "bad signature": (f"Bearer {make_token(secret='x' * 40)}", "INVALID_TOKEN"),
    "HS512 off the list": (
        f"Bearer {make_token(secret='s' * 64, algorithm='HS512')}",
        "INVALID_TOKEN",
    ),
    "expired": (f"Bearer {make_token(ttl=-3600)}", "TOKEN_EXPIRED"),
    "no exp": (
        f"Bearer {forge({'alg': 'HS256'}, claims(exp=None, iss=None, aud=None), hs256_with(TEST_SECRET.encode()))}",  # noqa: E501
        "INVALID_TOKEN",
    ),
    "token over 8 KiB": (f"Bearer {make_token(padding='x' * 9000)}", "INVALID_TOKEN"),
}


@pytest.mark.parametrize("index", range(6), ids=OPERATION_IDS)
@pytest.mark.parametrize("case", BAD_AUTHORIZATIONS)
def test_every_operation_refuses_bad_tokens_and_changes_nothing(app, alice, create, index, case):
    task = create(alice, "alice")
    before = alice.get("/api/alice/tasks").json["data"]
    authorization, code = BAD_AUTHORIZATIONS[case]
    client = app.test_client()
    headers = {"Authorization": authorization} if authorization else {}

    method, path, body = operations("alice", task["id"])[index]
    response = send(client, method, path, body, headers=headers)

    assert response.status_code == 401
    assert response.json["error"]["code"] == code
    challenge = "Bearer" if code == "AUTHENTICATION_REQUIRED" else 'Bearer error="invalid_token"'
    assert response.headers["WWW-Authenticate"] == challenge
    assert alice.get("/api/alice/tasks").json["data"] == before


@pytest.mark.parametrize("index", range(6), ids=OPERATION_IDS)
def test_authentication_comes_before_404_and_400(app, index):
    client = app.test_client()
    method, path, _ = operations("alice", "not-a-task")[index]
    response = send(client, method, path, {"unknown": "field", "title": ""})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "AUTHENTICATION_REQUIRED"
    assert response.json["error"]["details"] is None
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_token_in_the_query_string_or_a_cookie_is_not_accepted(app):
    token = make_token("alice")
    client = app.test_client()
    client.set_cookie("token", token)
    for url in (f"/api/alice/tasks?access_token={token}", "/api/alice/tasks"):
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.json["error"]["code"] == "AUTHENTICATION_REQUIRED", url


def test_a_token_for_another_user_is_403_not_a_way_in(client_for, create):
    create(client_for("bob"), "bob")
    response = client_for("alice").get(f"/api/bob/tasks/{uuid.uuid4()}")
    assert response.status_code == 403
    assert response.json["error"]["code"] == "FORBIDDEN"
    assert response.json["error"]["message"] == "This token may not act for that user."
