"""Task resources: the six endpoints under /api/<user_id>/tasks"""

from flask import Response, g, jsonify, request, url_for
from flask.views import MethodView

from todo import idempotency, tasks
from todo.api import Blueprint
from todo.auth import authenticate
from todo.envelope import success, success_response
from todo.models import USER_ID_MAX, VERSION_MAX, Task
from todo.schemas import (
    IdempotencyHeaderSchema,
    TaskCompleteSchema,
    TaskCreateSchema,
    TaskListResponseSchema,
    TaskQueryArgsSchema,
    TaskResponseSchema,
    TaskUpdateSchema,
)
from todo.tasks import TaskDocument

blp = Blueprint(
    "tasks",
    __name__,
    url_prefix="/api/<user_id>/tasks",
    description="A user's tasks. Every call needs a bearer token for that user.",
)
blp.before_request(authenticate)

# Documents the url_prefix's <user_id>, for api.register_blueprint: only the document,
# as a length in the URL rule would make a 404 of what authentication answers first
# (401, or 403 for another user's URL).
URL_PREFIX_PARAMETERS = [
    {
        "in": "path",
        "name": "user_id",
        "description": "The token's user (another user's id is 403): an opaque id from "
        "the identity provider.",
        "schema": {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX},
    }
]


ETAG_HEADER = {
    "ETag": {
        "description": "The task's version. It changes whenever the task changes.",
        "required": True,
        "schema": {"type": "string"},
    }
}
IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": "Write only if the task's ETag is one of these (strong comparison; "
    "`*`: any); otherwise 412 and nothing changes. Optional.",
}
IF_NONE_MATCH = {
    "in": "header",
    "name": "If-None-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": "304 with no body when the task's ETag is one of these.",
}


def conditional_write(view):
    """Documents If-Match and its 412 on a write."""
    view = blp.doc(parameters=[IF_MATCH])(view)
    return blp.alt_response(412, response="PRECONDITION_FAILED")(view)


def etag(task: TaskDocument | Task) -> str:
    """The task's strong ETag: its version, which every change bumps."""
    return f'"{task.version}"'


def if_match_versions() -> frozenset[int] | None:
    """The versions If-Match admits; None when absent or `*` (any existing task).

    Strong comparison: weak tags never match, nor tags that are no version of ours.
    The write checks them in its WHERE, so a write that slipped in between fails.
    """
    if_match = request.if_match
    if not if_match or if_match.star_tag:
        return None
    return frozenset(int(tag) for tag in if_match.as_set() if _is_version(tag))


def _is_version(tag: str | None) -> bool:
    # A version as etag() writes it: ASCII digits ("²".isdigit() is true), no leading
    # zero (strong comparison is by characters: "01" is not "1"), within the column's
    # range. werkzeug gives None for an empty tag ("").
    return (
        bool(tag)
        and tag.isascii()
        and tag.isdigit()
        and tag[0] != "0"
        and len(tag) <= 10
        and int(tag) <= VERSION_MAX
    )


# The views return finished responses, which flask-smorest passes through: the
# @blp.response schemas document them, task_json or the database builds them.
# The argument schemas are instances: webargs would build (and deep-copy the
# fields of) a schema given as a class on every request.


def one_task(task: TaskDocument, status: int = 200, headers: dict | None = None) -> Response:
    """The envelope of one task, with its ETag."""
    response = success_response(task.json)
    response.status_code = status
    response.headers.update({"ETag": etag(task), **(headers or {})})
    return response


def created_headers(task: TaskDocument | Task) -> dict:
    """Location and ETag of a task the request created."""
    url = url_for("tasks.TaskById", user_id=g.user_id, task_id=task.id, _external=True)
    return {"Location": url, "ETag": etag(task)}


@blp.route("")
@blp.errors(get=(401, 403), post=(401, 403, 413, 415))
class Tasks(MethodView):
    @blp.arguments(TaskQueryArgsSchema(), location="query")
    @blp.response(200, TaskListResponseSchema)
    def get(self, args, user_id):
        """List tasks

        Newest first by default. Keyset-paginated: pass `meta.next_cursor` back as
        `cursor` to read the next page; `meta.total` counts every matching task.
        """
        page = tasks.list_page(g.user_id, **args)
        return success_response(
            page.items_json,
            count=page.count,
            limit=page.limit,
            next_cursor=page.next_cursor,
            total=page.total,
        )

    @blp.arguments(TaskCreateSchema())
    @blp.arguments(IdempotencyHeaderSchema(), location="headers")
    @blp.response(
        201,
        TaskResponseSchema,
        headers={
            "Location": {"required": True, "schema": {"type": "string"}},
            **ETAG_HEADER,
            "Idempotent-Replayed": {
                "description": "`true` when this answer replays an earlier request's.",
                "schema": {"type": "string", "enum": ["true"]},
            },
        },
    )
    @blp.alt_response(409, response="CONFLICT")
    def post(self, body, idempotency_args, user_id):
        """Create a task

        With an `Idempotency-Key` header the request is safe to retry: see the header.
        """
        key = idempotency_args.get("idempotency_key")
        if key is None:
            task = tasks.create(g.user_id, **body)
            return one_task(task, 201, created_headers(task))
        outcome = idempotency.create_task_once(
            g.user_id,
            key,
            idempotency.fingerprint(request.get_json(silent=True)),
            body,
            created_headers,
        )
        headers = dict(outcome.headers)
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
        response = jsonify(success(outcome.data))
        response.status_code = 201
        response.headers.update(headers)
        return response


@blp.route("/<task_id>")
@blp.errors(get=(401, 403, 404), put=(401, 403, 404, 413, 415), delete=(401, 403, 404))
class TaskById(MethodView):
    @blp.response(200, TaskResponseSchema, headers=ETAG_HEADER)
    @blp.alt_response(
        304, description="Not modified: the task still has that ETag.", headers=ETAG_HEADER
    )
    @blp.doc(parameters=[IF_NONE_MATCH])
    def get(self, user_id, task_id):
        """Get a task

        Answers 304 with no body when `If-None-Match` names the current ETag.
        """
        task = tasks.get(g.user_id, task_id)
        if request.if_none_match.contains_weak(str(task.version)):
            return Response(status=304, headers={"ETag": etag(task)})
        return one_task(task)

    @blp.arguments(TaskUpdateSchema())
    @blp.response(200, TaskResponseSchema, headers=ETAG_HEADER)
    @conditional_write
    def put(self, changes, user_id, task_id):
        """Replace a task's fields

        `title` is required; `description` and `is_completed` keep their values
        when omitted, and `"description": null` clears the description.
        """
        return one_task(tasks.update(g.user_id, task_id, changes, if_match_versions()))

    @blp.response(204)
    @conditional_write
    def delete(self, user_id, task_id):
        """Delete a task"""
        tasks.delete(g.user_id, task_id, if_match_versions())


@blp.route("/<task_id>/complete")
@blp.errors(patch=(401, 403, 404, 413, 415))
class TaskCompletion(MethodView):
    @blp.arguments(TaskCompleteSchema(), required=False)
    @blp.response(200, TaskResponseSchema, headers=ETAG_HEADER)
    @conditional_write
    def patch(self, body, user_id, task_id):
        """Complete or reopen a task

        No body, or `{}`, completes the task (completing a completed task keeps its
        `completed_at`); `{"is_completed": false}` reopens it.
        """
        task = tasks.set_completed(g.user_id, task_id, body["is_completed"], if_match_versions())
        return one_task(task)
