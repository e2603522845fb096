"""The response envelope shared by every JSON answer of the API"""

import json
from datetime import UTC, datetime

from flask import current_app, g

COMPACT = (",", ":")  # JSON separators, as Flask's own responses

# The JSON the app writes itself (meta, and tasks that PostgreSQL did not encode) holds
# only strings, numbers, booleans and None: the standard encoder, built once, writes it
# as Flask's provider does (compact, ASCII, keys in order). The provider builds a new
# encoder on every call: 3 % of a one-task GET's instructions (benchmarks/README.md).
encode_json = json.JSONEncoder(separators=COMPACT).encode


def timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with microseconds and a Z suffix, as every time in the API.

    `moment` must be aware UTC, as the models return it (isoformat is much faster
    than strftime, and this runs three times per task of a list).
    """
    return (moment or datetime.now(UTC)).isoformat(timespec="microseconds")[:-6] + "Z"


def meta(**extra) -> dict:
    return {**extra, "timestamp": timestamp(), "request_id": g.get("request_id")}


def success(data, **extra_meta) -> dict:
    return {"data": data, "meta": meta(**extra_meta)}


def success_response(data_json: str | bytes, **extra_meta):
    """A success envelope around data already encoded as JSON (text or UTF-8)."""
    if isinstance(data_json, str):
        data_json = data_json.encode()
    meta_json = encode_json(meta(**extra_meta)).encode()
    body = b"".join((b'{"data":', data_json, b',"meta":', meta_json, b"}"))
    return current_app.response_class(body, content_type="application/json")


def error_envelope(code: str, message: str, details: dict | None) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "timestamp": timestamp(),
            "request_id": g.get("request_id"),
        }
    }
