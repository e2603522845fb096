"""The committed OpenAPI document is the one the code generates"""

import json
from pathlib import Path

COMMITTED = Path(__file__).resolve().parent.parent / "openapi.json"


def test_committed_openapi_matches_the_code(anonymous):
    served = anonymous.get("/openapi.json").json

    assert served == json.loads(COMMITTED.read_text()), (
        "openapi.json is stale: run `flask openapi write --format=json openapi.json`"
    )


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
