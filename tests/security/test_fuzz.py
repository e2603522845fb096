"""Schemathesis against the app's own OpenAPI document, in process (WSGI)

Every operation gets bounded, derandomised examples (valid and invalid inputs)
sent with a valid token for the user of the path, so the requests reach the
handlers: no answer may be a 5xx, and every answer must match the document
(status codes, content types, headers, bodies).
"""

from urllib.parse import unquote

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.generation.meta import ParameterLocation, negated_parameters
from schemathesis.specs.openapi.checks import negative_data_rejection

from tests.conftest import make_token

MAX_EXAMPLES = 25
BODY, HEADER, PATH, QUERY = (
    ParameterLocation.BODY,
    ParameterLocation.HEADER,
    ParameterLocation.PATH,
    ParameterLocation.QUERY,
)
SEEDED_USER = "fuzz-user-Yq3uT0vYk1bq9n2LwE7dXh5s"


def seed_tasks(app, count=3):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token(SEEDED_USER)}"
    ids = []
    for n in range(count):
        body = {"title": f"seeded {n}", "is_completed": n % 2 == 1}
        response = client.post(f"/api/{SEEDED_USER}/tasks", json=body)
        assert response.status_code == 201, response.json
        ids.append(response.json["data"]["id"])
    return ids


def made_valid(case, replaced):
    """Whether every part a negative case made invalid is one this test replaces with
    a valid value (then its acceptance is right, not a failure to reject)."""
    negated = set(negated_parameters(case.meta))
    return bool(negated) and negated <= replaced and not case.meta.is_negative_at(BODY)


def fuzz(operation, mode, task_ids, statuses):
    """Run one operation's examples; raises what the first failing example found.
    `statuses` collects the status codes of the answers."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def check(case, data):
        # Half the cases act on the seeded user's real tasks, so that reads and
        # writes reach rows and not only the 404 path.
        replaced = {("Authorization", HEADER), ("If-Match", HEADER)}
        if data.draw(st.booleans(), label="seeded"):
            replaced |= {("user_id", PATH), ("task_id", PATH)}
            case.path_parameters["user_id"] = SEEDED_USER
            if "task_id" in case.path_parameters:
                task_id = data.draw(st.sampled_from(task_ids), label="task_id")
                case.path_parameters["task_id"] = task_id
        if case.query and ("cursor", QUERY) not in set(negated_parameters(case.meta)):
            # A cursor is opaque and signed: a made-up one is rightly 400, never "valid"
            # (nor in a negative case whose invalid part is elsewhere).
            case.query.pop("cursor", None)
        if case.headers:
            # A made-up If-Match is rightly 412 in either mode: only the server knows
            # the ETag (If-Match itself is tested in tests/test_conditional.py).
            case.headers.pop("If-Match", None)
        # schemathesis generates path parameters already percent-encoded
        user = unquote(str(case.path_parameters["user_id"]))
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {make_token(user)}"},
            excluded_checks=[negative_data_rejection] if made_valid(case, replaced) else [],
        )
        statuses.add(response.status_code)

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(app, mode):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6

    failures, unreached = [], []
    for operation in operations:
        statuses = set()
        try:
            fuzz(operation, mode, seed_tasks(app), statuses)
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - report them all
            failures.append(f"{operation.label}: {error}")
        if mode is GenerationMode.POSITIVE and not any(200 <= s < 300 for s in statuses):
            unreached.append(f"{operation.label}: only {sorted(statuses)}")
    assert not failures, "\n\n".join(failures)
    # the fuzzing reached the handlers, not only the auth hook and the 404 path
    assert not unreached, unreached
