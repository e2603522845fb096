"""Task resources: the six endpoints under /api/<user_id>/tasks"""

from flask import Response, g, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import abort

from todo import idempotency, tasks
from todo.api import Blueprint
from todo.auth import authenticate
from todo.envelope import success, success_response
from todo.models import Task
from todo.schemas import (
    IdempotencyHeaderSchema,
    TaskCompleteSchema,
    TaskCreateSchema,
    TaskListResponseSchema,
    TaskQueryArgsSchema,
    TaskResponseSchema,
    TaskUpdateSchema,
    task_json,
)

blp = Blueprint(
    "tasks",
    __name__,
    url_prefix="/api/<user_id>/tasks",
    description="A user's tasks. Every call needs a bearer token for that user.",
)
blp.before_request(authenticate)


ETAG_HEADER = {
    "ETag": {
        "description": "The task's version. It changes whenever the task changes.",
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


def etag(task: Task) -> str:
    """The task's strong ETag: its version, which every UPDATE bumps."""
    return f'"{task.version}"'


def not_modified(task: Task) -> bool:
    """If-None-Match names the task's current ETag (weak comparison, RFC 9110 13.1.2)."""
    return request.if_none_match.contains_weak(str(task.version))


# The views return finished responses, which flask-smorest passes through: the
# @blp.response schemas document them, task_json builds them (see its docstring).


def task_response(data: dict, status: int, headers: dict) -> Response:
    response = jsonify(success(data))
    response.status_code = status
    response.headers.update(headers)
    return response


def one_task(task: Task) -> Response:
    """The envelope of one task, with its ETag."""
    return task_response(task_json(task), 200, {"ETag": etag(task)})


def created_headers(task: Task) -> dict:
    return {
        "Location": url_for(
            "tasks.TaskById", user_id=task.user_id, task_id=task.id, _external=True
        ),
        "ETag": etag(task),
    }


def check_if_match(task: Task) -> None:
    """412 when If-Match is sent and names no current version of the task.

    If-Match uses the strong comparison (a weak tag never matches) and `*` matches
    any existing task. This is the early, friendly check: the UPDATE or DELETE that
    follows also requires the version it read, so a write that slips in between
    still fails (StaleDataError, 412 in todo/api.py).
    """
    if request.if_match and not request.if_match.contains(str(task.version)):
        abort(412)


@blp.route("")
@blp.errors(get=(401, 403), post=(401, 403, 413, 415))
class Tasks(MethodView):
    @blp.arguments(TaskQueryArgsSchema, location="query")
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

    @blp.arguments(TaskCreateSchema)
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.response(
        201,
        TaskResponseSchema,
        headers={
            "Location": {"schema": {"type": "string"}},
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
            return task_response(task_json(task), 201, created_headers(task))
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
        return task_response(outcome.data, 201, headers)


@blp.route("/<task_id>")
@blp.errors(get=(401, 403, 404), put=(401, 403, 404, 413, 415), delete=(401, 403, 404))
class TaskById(MethodView):
    @blp.response(200, TaskResponseSchema, headers=ETAG_HEADER)
    @blp.alt_response(304, description="Not modified: the task still has that ETag.")
    @blp.doc(parameters=[IF_NONE_MATCH])
    def get(self, user_id, task_id):
        """Get a task

        Answers 304 with no body when `If-None-Match` names the current ETag.
        """
        task = tasks.get_or_404(g.user_id, task_id)
        if not_modified(task):
            return Response(status=304, headers={"ETag": etag(task)})
        return one_task(task)

    @blp.arguments(TaskUpdateSchema)
    @blp.response(200, TaskResponseSchema, headers=ETAG_HEADER)
    @conditional_write
    def put(self, changes, user_id, task_id):
        """Replace a task's fields

        `title` is required; `description` and `is_completed` keep their values
        when omitted, and `"description": null` clears the description.
        """
        task = tasks.get_or_404(g.user_id, task_id)
        check_if_match(task)
        return one_task(tasks.update(task, changes))

    @blp.response(204)
    @conditional_write
    def delete(self, user_id, task_id):
        """Delete a task"""
        task = tasks.get_or_404(g.user_id, task_id)
        check_if_match(task)
        tasks.delete(task)


@blp.route("/<task_id>/complete")
@blp.errors(patch=(401, 403, 404, 413, 415))
class TaskCompletion(MethodView):
    @blp.arguments(TaskCompleteSchema, required=False)
    @blp.response(200, TaskResponseSchema, headers=ETAG_HEADER)
    @conditional_write
    def patch(self, body, user_id, task_id):
        """Complete or reopen a task

        No body, or `{}`, completes the task (completing a completed task keeps its
        `completed_at`); `{"is_completed": false}` reopens it.
        """
        task = tasks.get_or_404(g.user_id, task_id)
        check_if_match(task)
        return one_task(tasks.set_completed(task, body["is_completed"]))
