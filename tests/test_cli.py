"""`flask tasks token`: a development token that the API accepts, refused where it must be"""

import re
import shlex
from urllib.parse import urlsplit

import jwt
import pytest
from conftest import TEST_SECRET, base_config

from cli import tasks
from todo import create_app

PG_URL = "postgresql://postgres@127.0.0.1:1/todo"  # never connected to


def invoke(app, *args):
    return app.test_cli_runner().invoke(tasks, ["token", *args])


def test_the_factory_registers_the_tasks_group(app):
    assert app.cli.commands["tasks"] is tasks


def test_token_works_against_the_api(app):
    result = invoke(app, "--user-id", "alice")

    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token)
    response = app.test_client().get(
        "/api/alice/tasks", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert (
        app.test_client()
        .get("/api/bob/tasks", headers={"Authorization": f"Bearer {token}"})
        .status_code
        == 403
    )


@pytest.mark.parametrize(
    ("ttl", "seconds"), [("900s", 900), ("15m", 900), ("1h", 3600), ("7d", 604800), ("60", 60)]
)
def test_ttl(app, ttl, seconds):
    token = invoke(app, "--user-id", "alice", "--ttl", ttl).output.strip()

    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == seconds
    assert claims["sub"] == "alice"


NOT_A_DURATION = "is not a duration like 900s, 15m, 1h or 7d (at most 3650d)"


@pytest.mark.parametrize("ttl", ["abc", "0", "-5m", "1w", "m"])
def test_bad_ttl_is_a_usage_error(app, ttl):
    result = invoke(app, "--user-id", "alice", "--ttl", ttl)

    assert result.exit_code == 2
    assert result.stderr.endswith(
        f"\n\nError: Invalid value for '--ttl': {ttl!r} {NOT_A_DURATION}\n"
    )
    assert result.stdout == ""


@pytest.mark.parametrize("ttl", ["99999999999999999999d", "3651d", "\u00b2", "\uff15m", "1" * 5000])
def test_a_ttl_beyond_ten_years_or_not_in_ascii_digits_is_a_usage_error(app, ttl):
    result = invoke(app, "--user-id", "alice", "--ttl", ttl)

    assert result.exit_code == 2
    assert result.stderr.endswith(
        f"\n\nError: Invalid value for '--ttl': {ttl!r} {NOT_A_DURATION}\n"
    )


def test_the_longest_ttl_is_ten_years(app):
    token = invoke(app, "--user-id", "alice", "--ttl", "3650d").output.strip()

    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3650 * 86400


@pytest.mark.parametrize("user_id", ["Yq3uT0vYk1bq9n2LwE7dXh5sAbCdEfGh", "o'brien & co"])
def test_curl_prints_a_working_curl_line(app, user_id):
    result = invoke(app, "--user-id", user_id, "--curl")

    assert result.exit_code == 0
    argv = shlex.split(result.output)
    assert argv[0] == "curl"
    header = argv[argv.index("-H") + 1]
    url = argv[-1]
    assert urlsplit(url)[:2] == ("http", "127.0.0.1:8000")
    name, _, value = header.partition(": ")
    response = app.test_client().get(urlsplit(url).path, headers={name: value})
    assert response.status_code == 200
    assert response.json["meta"]["total"] == 0


def test_token_carries_issuer_audience_and_the_user_claim(make_app):
    app = make_app(
        JWT_ISSUER="https://auth.example.com", JWT_AUDIENCE="todo-api", JWT_USER_CLAIM="uid"
    )

    token = invoke(app, "--user-id", "alice").output.strip()

    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="todo-api")
    assert claims["exp"] - claims["iat"] == 3600
    assert {k: v for k, v in claims.items() if k not in ("iat", "exp")} == {
        "uid": "alice",
        "iss": "https://auth.example.com",
        "aud": "todo-api",
    }
    response = app.test_client().get(
        "/api/alice/tasks", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200


USAGE = "Usage: tasks token [OPTIONS]\nTry 'tasks token --help' for help.\n\n"


@pytest.mark.parametrize("user_id", ["", "x" * 256])
def test_bad_user_id_is_a_usage_error(app, user_id):
    result = invoke(app, "--user-id", user_id)

    assert result.exit_code == 2
    assert result.stderr == (
        f"{USAGE}Error: Invalid value for '--user-id': must be 1 to 255 characters\n"
    )
    assert result.stdout == ""


@pytest.mark.parametrize("user_id", ["a\x00b", "caf\udce9"])
def test_a_user_id_the_api_would_refuse_is_a_usage_error(app, user_id):
    result = invoke(app, "--user-id", user_id)

    assert result.exit_code == 2
    assert result.stderr == (
        f"{USAGE}Error: Invalid value for '--user-id': must be UTF-8 text without NUL characters\n"
    )


def test_a_usage_error_comes_before_a_configuration_that_refuses():
    app = create_app({**base_config(PG_URL), "ENVIRONMENT": "production"})

    assert invoke(app, "--user-id", "").exit_code == 2
    assert invoke(app, "--user-id", "alice", "--ttl", "soon").exit_code == 2
    assert invoke(app, "--user-id", "alice").exit_code == 1


def test_refused_in_production():
    app = create_app({**base_config(PG_URL), "ENVIRONMENT": "production"})

    result = invoke(app, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.output == "Error: refusing to mint tokens when ENVIRONMENT=production\n"


def test_refused_when_only_a_jwks_is_configured():
    app = create_app(
        {
            **base_config(PG_URL),
            "JWT_SECRET": None,
            "JWT_JWKS_URL": "https://auth.example.com/api/auth/jwks",
            "SECRET_KEY": "cursor-signing-key-of-at-least-32-bytes",
        }
    )

    result = invoke(app, "--user-id", "alice")

    assert result.exit_code == 1
    assert result.output == "Error: no JWT_SECRET: only the identity provider can issue tokens\n"
