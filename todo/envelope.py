"""The response envelope shared by every JSON answer of the API"""

from datetime import UTC, datetime

from flask import g


def timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with microseconds and a Z suffix, as every time in the API."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def meta(**extra) -> dict:
    return {**extra, "timestamp": timestamp(), "request_id": g.get("request_id")}


def success(data, **extra_meta) -> dict:
    return {"data": data, "meta": meta(**extra_meta)}


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
