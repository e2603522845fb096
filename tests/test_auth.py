"""Bearer tokens: algorithms, claims, the three 401 codes, 403, and the order of checks"""

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import TEST_SECRET, make_token
from helpers import count, create

from todo import auth

LIST = "/api/alice/tasks"
CHALLENGE = "Bearer"
INVALID = 'Bearer error="invalid_token"'
BETTER_AUTH_ID = "Yq3uT0vYk1bq9n2LwE7dXh5sAbCdEfGh"
LONG_SECRET = "a-secret-long-enough-for-hs512-" + "k" * 40  # HS512 wants 64 bytes


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(alg="none", **claims):
    now = int(datetime.now(UTC).timestamp())
    payload = {"sub": "alice", "iat": now, "exp": now + 300, **claims}
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(payload)}."


def get(client, path=LIST, token=None, header=None):
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(path, headers=headers)


MESSAGES = {
    "AUTHENTICATION_REQUIRED": "Send an Authorization: Bearer <token> header.",
    "INVALID_TOKEN": "The token is not valid.",
    "TOKEN_EXPIRED": "The token has expired.",
}


def assert_401(response, code, challenge, message=None):
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge
    error = response.json["error"]
    assert error["code"] == code
    assert error["details"] is None
    assert error["message"] == (message or MESSAGES[code])


# Presence and form of the header


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Token abc", "abc", "Bearer\tx"],
)
def test_missing_or_non_bearer_authorization_is_authentication_required(anonymous, header):
    response = anonymous.get(LIST, headers={} if header is None else {"Authorization": header})

    assert_401(response, "AUTHENTICATION_REQUIRED", CHALLENGE)


def test_the_scheme_is_case_insensitive(anonymous):
    assert get(anonymous, header=f"bearer {make_token('alice')}").status_code == 200
    assert get(anonymous, header=f"BEARER {make_token('alice')}").status_code == 200


# Algorithms


def test_hs256_is_the_default_algorithm(app, anonymous):
    assert app.config["JWT_ALGORITHMS"] == ["HS256"]
    assert get(anonymous, token=make_token("alice", algorithm="HS256")).status_code == 200
    for algorithm in ("HS384", "HS512"):
        token = make_token("alice", secret=TEST_SECRET + "x" * 30, algorithm=algorithm)
        response = get(anonymous, token=token)
        assert_401(response, "INVALID_TOKEN", INVALID)


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hs256_384_512_when_allowed(make_app, algorithm):
    app = make_app(JWT_SECRET=LONG_SECRET, JWT_ALGORITHMS=["HS256", "HS384", "HS512"])

    token = make_token("alice", secret=LONG_SECRET, algorithm=algorithm)
    response = get(app.test_client(), token=token)

    assert response.status_code == 200


def test_an_algorithm_outside_the_allow_list_is_refused(make_app):
    app = make_app(JWT_SECRET=LONG_SECRET, JWT_ALGORITHMS=["HS512"])
    client = app.test_client()

    token = make_token("alice", secret=LONG_SECRET, algorithm="HS512")
    assert get(client, token=token).status_code == 200
    token = make_token("alice", secret=LONG_SECRET)
    assert_401(get(client, token=token), "INVALID_TOKEN", INVALID)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256"])
def test_unsigned_tokens_are_refused(anonymous, alg):
    assert_401(get(anonymous, token=unsigned_token(alg)), "INVALID_TOKEN", INVALID)


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b.c",
        "a.b",
        "...",
        "eyJhbGciOiJIUzI1NiJ9.not-base64!.sig",
        b64({"alg": "HS256"}) + "." + base64.urlsafe_b64encode(b"[1]").decode() + ".x",
    ],
)
def test_malformed_tokens_are_invalid(anonymous, token):
    assert_401(get(anonymous, token=token), "INVALID_TOKEN", INVALID)


def test_bad_signature_is_invalid(anonymous):
    token = make_token("alice", secret="another-secret-that-is-at-least-32-bytes")

    assert_401(get(anonymous, token=token), "INVALID_TOKEN", INVALID)


def test_altered_payload_is_invalid(anonymous):
    header, _payload, signature = make_token("bob").split(".")
    forged = f"{header}.{b64({'sub': 'alice', 'exp': 4102444800})}.{signature}"

    assert_401(get(anonymous, token=forged), "INVALID_TOKEN", INVALID)


# Time claims


def test_expired_token_is_token_expired(anonymous):
    response = get(anonymous, token=make_token("alice", ttl=-31 - 5))

    assert_401(response, "TOKEN_EXPIRED", INVALID)


def test_expired_within_the_leeway_is_accepted(anonymous):
    assert get(anonymous, token=make_token("alice", ttl=-20)).status_code == 200


def test_leeway_is_configurable(make_app):
    client = make_app(JWT_LEEWAY_SECONDS=0).test_client()

    assert_401(get(client, token=make_token("alice", ttl=-2)), "TOKEN_EXPIRED", INVALID)


def test_nbf_in_the_future_is_invalid_and_within_leeway_accepted(anonymous):
    now = datetime.now(UTC)

    later = make_token("alice", nbf=now + timedelta(seconds=120))
    assert_401(get(anonymous, token=later), "INVALID_TOKEN", INVALID)
    almost = make_token("alice", nbf=now + timedelta(seconds=10))
    assert get(anonymous, token=almost).status_code == 200


@pytest.mark.parametrize("claim", ["exp", "sub"])
def test_missing_required_claim_is_invalid(anonymous, claim):
    token = make_token("alice", **{claim: None})

    assert_401(get(anonymous, token=token), "INVALID_TOKEN", INVALID)


@pytest.mark.parametrize("exp", ["4102444800", "4102444800.5", [4102444800], {"at": 4102444800}])
def test_an_exp_that_is_not_a_json_number_is_invalid(anonymous, exp):
    # pyjwt reads exp with int(), which takes a numeric string; RFC 7519 wants a number.
    token = make_token("alice", exp=exp)

    assert_401(get(anonymous, token=token), "INVALID_TOKEN", INVALID)


def test_a_fractional_exp_is_a_number(anonymous):
    token = make_token("alice", exp=time.time() + 300.5)

    assert get(anonymous, token=token).status_code == 200


# Issuer and audience


@pytest.fixture
def strict_client(make_app):
    app = make_app(JWT_ISSUER="https://auth.example.com", JWT_AUDIENCE="todo-api")
    return app.test_client()


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"iss": "https://auth.example.com", "aud": "todo-api"}, 200),
        ({"iss": "https://auth.example.com", "aud": ["other", "todo-api"]}, 200),
        ({"iss": "https://evil.example.com", "aud": "todo-api"}, 401),
        ({"iss": "https://auth.example.com", "aud": "other"}, 401),
        ({"aud": "todo-api"}, 401),
        ({"iss": "https://auth.example.com"}, 401),
    ],
)
def test_issuer_and_audience_when_configured(strict_client, claims, status):
    response = get(strict_client, token=make_token("alice", **claims))

    assert response.status_code == status
    if status == 401:
        assert_401(response, "INVALID_TOKEN", INVALID)


def test_issuer_and_audience_are_not_checked_when_not_configured(anonymous):
    token = make_token("alice", iss="anyone", aud="anything")

    assert get(anonymous, token=token).status_code == 200


# The user claim


def test_user_claim_is_configurable(make_app):
    client = make_app(JWT_USER_CLAIM="uid").test_client()

    assert get(client, token=make_token(None, uid="alice")).status_code == 200
    assert_401(get(client, token=make_token("alice")), "INVALID_TOKEN", INVALID)
    response = get(client, token=make_token("alice", uid="bob"))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "FORBIDDEN"


# NUL and lone surrogates: PostgreSQL can store neither (the same claim must fail alike
# on every backend, not as a 500 on one).
@pytest.mark.parametrize("user_id", ["", "x" * 256, 42, None, "a\x00b", "a\ud800b"])
def test_bad_user_claims_are_invalid(make_app, user_id):
    client = make_app(JWT_USER_CLAIM="uid").test_client()

    response = get(
        client, token=make_token(None, uid=user_id) if user_id is not None else make_token(None)
    )

    if user_id is None:  # no claim at all: pyjwt's required-claim check
        assert_401(response, "INVALID_TOKEN", INVALID)
    else:
        assert_401(
            response, "INVALID_TOKEN", INVALID, "The token's user claim is not a valid user id."
        )


def test_user_claim_of_255_characters_is_accepted(client_for):
    user = "u" * 255

    response = client_for(user).post(f"/api/{user}/tasks", json={"title": "long id"})

    assert response.status_code == 201
    assert response.json["data"]["user_id"] == user


def test_better_auth_style_ids_work_end_to_end(app, client_for):
    client = client_for(BETTER_AUTH_ID)
    base = f"/api/{BETTER_AUTH_ID}/tasks"

    task = create(client, user=BETTER_AUTH_ID)
    assert task["user_id"] == BETTER_AUTH_ID
    assert client.get(base).json["meta"]["total"] == 1
    assert client.patch(f"{base}/{task['id']}/complete").status_code == 200
    assert client.delete(f"{base}/{task['id']}").status_code == 204
    # Ids are compared exactly: another case is another user.
    assert client.get(f"/api/{BETTER_AUTH_ID.lower()}/tasks").status_code == 403


def test_token_over_8_kib_is_invalid(anonymous):
    padding = "x" * 8192
    token = make_token("alice", padding=padding)
    assert len(token) > 8192

    response = get(anonymous, token=token)

    assert_401(response, "INVALID_TOKEN", INVALID, "The token is too large.")


def test_token_just_under_8_kib_is_accepted(anonymous):
    token = make_token("alice", padding="")
    token = make_token("alice", padding="x" * ((8192 - len(token)) * 3 // 4 - 8))
    assert 8000 < len(token) <= 8192

    assert get(anonymous, token=token).status_code == 200


# 403 and the order of checks


ENDPOINTS = [
    ("get", "/api/bob/tasks", None),
    ("post", "/api/bob/tasks", {"title": "x"}),
    ("get", "/api/bob/tasks/00000000-0000-4000-8000-000000000000", None),
    ("put", "/api/bob/tasks/00000000-0000-4000-8000-000000000000", {"title": "x"}),
    ("delete", "/api/bob/tasks/00000000-0000-4000-8000-000000000000", None),
    ("patch", "/api/bob/tasks/00000000-0000-4000-8000-000000000000/complete", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_another_users_url_is_403_on_every_endpoint(app, alice, method, path, body):
    response = getattr(alice, method)(path, json=body)

    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    assert response.json["error"]["code"] == "FORBIDDEN"
    assert response.json["error"]["message"] == "This token may not act for that user."
    assert count(app) == 0


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_endpoint_needs_a_token(anonymous, method, path, body):
    response = getattr(anonymous, method)(path.replace("bob", "alice"), json=body)

    assert_401(response, "AUTHENTICATION_REQUIRED", CHALLENGE)


def test_authentication_comes_before_the_url_user(anonymous):
    expired = make_token("alice", ttl=-3600)

    assert_401(get(anonymous, "/api/bob/tasks"), "AUTHENTICATION_REQUIRED", CHALLENGE)
    assert_401(get(anonymous, "/api/bob/tasks", token=expired), "TOKEN_EXPIRED", INVALID)


def test_authentication_comes_before_request_checks(app, anonymous):
    expired = {"Authorization": f"Bearer {make_token('alice', ttl=-3600)}"}

    cases = [
        anonymous.post(LIST, json={"title": ""}),
        anonymous.post(LIST, data="x", content_type="text/plain"),
        anonymous.get(LIST, query_string={"limit": 0}),
        anonymous.get(f"{LIST}/not-a-uuid"),
        anonymous.post(LIST, json={"title": "x" * 70_000}),
        anonymous.post(LIST, json={"title": ""}, headers=expired),
        anonymous.get(f"{LIST}/not-a-uuid", headers=expired),
    ]

    assert [(r.status_code, r.json["error"]["code"]) for r in cases] == [
        (401, "AUTHENTICATION_REQUIRED")
    ] * 5 + [(401, "TOKEN_EXPIRED")] * 2
    assert count(app) == 0


def test_the_url_user_comes_before_request_checks(app, alice):
    cases = [
        alice.post("/api/bob/tasks", json={"title": ""}),
        alice.post("/api/bob/tasks", data="x", content_type="text/plain"),
        alice.get("/api/bob/tasks", query_string={"limit": 0}),
        alice.get("/api/bob/tasks/not-a-uuid"),
        alice.put("/api/bob/tasks/not-a-uuid", json={"is_completed": "yes"}),
    ]

    assert [(r.status_code, r.json["error"]["code"]) for r in cases] == [(403, "FORBIDDEN")] * 5
    assert count(app) == 0


def test_tokens_are_checked_only_on_the_api(anonymous):
    for path in ("/healthz", "/openapi.json", "/docs"):
        assert anonymous.get(path).status_code == 200, path
    assert anonymous.get("/nope").status_code == 404


def test_the_secret_never_appears_in_a_response(anonymous):
    response = get(anonymous, token=make_token("alice", secret="x" * 40))

    assert_401(response, "INVALID_TOKEN", INVALID)
    assert TEST_SECRET not in response.get_data(as_text=True)


def test_a_remembered_token_still_expires(app, monkeypatch):
    token = make_token("alice", ttl=60)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert client.get("/api/alice/tasks").status_code == 200  # verified, remembered

    later = time.time() + 60 + app.config["JWT_LEEWAY_SECONDS"] + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    expired = client.get("/api/alice/tasks")

    assert_401(expired, "TOKEN_EXPIRED", INVALID)


def test_a_remembered_token_is_still_only_its_users(app):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token('alice')}"
    assert client.get("/api/alice/tasks").status_code == 200

    response = client.get("/api/bob/tasks")
    assert response.status_code == 403
    assert response.json["error"]["code"] == "FORBIDDEN"
