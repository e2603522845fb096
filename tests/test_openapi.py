"""The committed OpenAPI document is the one the code generates"""

import json
from pathlib import Path

COMMITTED = Path(__file__).resolve().parent.parent / "openapi.json"


def test_committed_openapi_matches_the_code(anonymous):
    served = anonymous.get("/openapi.json").json

    assert served == json.loads(COMMITTED.read_text()), (
        "openapi.json is stale: run `flask openapi write --format=json openapi.json`"
    )


def test_spec_lists_no_page_number_pagination(anonymous):
    """Lists page by cursor (meta.next_cursor); flask-smorest's page-number header and
    its schema are not the API's."""
    spec = anonymous.get("/openapi.json").json

    assert "PaginationMetadata" not in spec["components"]["schemas"]


def test_spec_declares_bearer_security_and_the_six_operations(anonymous):
    spec = anonymous.get("/openapi.json").json

    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operations = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert operations == {
        ("GET", "/api/{user_id}/tasks"),
        ("POST", "/api/{user_id}/tasks"),
        ("GET", "/api/{user_id}/tasks/{task_id}"),
        ("PUT", "/api/{user_id}/tasks/{task_id}"),
        ("DELETE", "/api/{user_id}/tasks/{task_id}"),
        ("PATCH", "/api/{user_id}/tasks/{task_id}/complete"),
    }


ERRORS = {
    ("get", "/api/{user_id}/tasks"): {"400", "401", "403"},
    ("post", "/api/{user_id}/tasks"): {"400", "401", "403", "413", "415"},
    ("get", "/api/{user_id}/tasks/{task_id}"): {"401", "403", "404"},
    ("put", "/api/{user_id}/tasks/{task_id}"): {"400", "401", "403", "404", "413", "415"},
    ("delete", "/api/{user_id}/tasks/{task_id}"): {"401", "403", "404"},
    ("patch", "/api/{user_id}/tasks/{task_id}/complete"): {
        "400",
        "401",
        "403",
        "404",
        "413",
        "415",
    },
}


def test_spec_documents_the_error_answers_in_the_envelope(anonymous):
    spec = anonymous.get("/openapi.json").json
    responses = spec["components"]["responses"]

    for (method, path), codes in ERRORS.items():
        operation = spec["paths"][path][method]
        documented = {code for code in operation["responses"] if code.startswith(("4", "5"))}
        # <=: the conditional-request and idempotency answers (409, 412) come on top
        assert codes <= documented, (method, path)
        for code in documented:
            name = operation["responses"][code]["$ref"].rsplit("/", 1)[-1]
            schema = responses[name]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    error = spec["components"]["schemas"]["Error"]["properties"]
    assert set(error) == {"code", "message", "details", "timestamp", "request_id"}
