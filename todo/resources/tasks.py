"""Task resources: the six endpoints under /api/<user_id>/tasks"""

from flask import Response, g, request, url_for
from flask.views import MethodView
from flask_smorest import abort

from todo import tasks
from todo.api import Blueprint
from todo.auth import authenticate
from todo.envelope import success
from todo.models import Task
from todo.schemas import (
    TaskCompleteSchema,
    TaskCreateSchema,
    TaskListResponseSchema,
    TaskQueryArgsSchema,
    TaskResponseSchema,
    TaskUpdateSchema,
)

blp = Blueprint(
    "tasks",
    __name__,
    url_prefix="/api/<user_id>/tasks",
    description="A user's tasks. Every call needs a bearer token for that user.",
)
blp.before_request(authenticate)


def etag(task: Task) -> str:
    return f'"{task.version}"'


def one_task(task: Task):
    """The envelope of one task, with its ETag."""
    return success(task), {"ETag": etag(task)}


def check_if_match(task: Task) -> None:
    """412 when the client's If-Match names another version of the task."""
    if request.if_match and not request.if_match.contains_raw(etag(task)):
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
        return success(
            page.items,
            count=len(page.items),
            limit=page.limit,
            next_cursor=page.next_cursor,
            total=page.total,
        )

    @blp.arguments(TaskCreateSchema)
    @blp.response(201, TaskResponseSchema, headers={"Location": {"schema": {"type": "string"}}})
    def post(self, body, user_id):
        """Create a task"""
        task = tasks.create(g.user_id, **body)
        data, headers = one_task(task)
        headers["Location"] = url_for(
            "tasks.TaskById", user_id=user_id, task_id=task.id, _external=True
        )
        return data, headers


@blp.route("/<task_id>")
@blp.errors(get=(401, 403, 404), put=(401, 403, 404, 413, 415), delete=(401, 403, 404))
class TaskById(MethodView):
    @blp.response(200, TaskResponseSchema)
    def get(self, user_id, task_id):
        """Get a task

        Answers 304 with no body when `If-None-Match` names the current ETag.
        """
        task = tasks.get_or_404(g.user_id, task_id)
        if request.if_none_match.contains_raw(etag(task)):
            return Response(status=304, headers={"ETag": etag(task)})
        return one_task(task)

    @blp.arguments(TaskUpdateSchema)
    @blp.response(200, TaskResponseSchema)
    def put(self, changes, user_id, task_id):
        """Replace a task's fields

        `title` is required; `description` and `is_completed` keep their values
        when omitted, and `"description": null` clears the description.
        """
        task = tasks.get_or_404(g.user_id, task_id)
        check_if_match(task)
        return one_task(tasks.update(task, changes))

    @blp.response(204)
    def delete(self, user_id, task_id):
        """Delete a task"""
        task = tasks.get_or_404(g.user_id, task_id)
        check_if_match(task)
        tasks.delete(task)


@blp.route("/<task_id>/complete")
@blp.errors(patch=(401, 403, 404, 413, 415))
class TaskCompletion(MethodView):
    @blp.arguments(TaskCompleteSchema, required=False)
    @blp.response(200, TaskResponseSchema)
    def patch(self, body, user_id, task_id):
        """Complete or reopen a task

        No body, or `{}`, completes the task (completing a completed task keeps its
        `completed_at`); `{"is_completed": false}` reopens it.
        """
        task = tasks.get_or_404(g.user_id, task_id)
        check_if_match(task)
        return one_task(tasks.set_completed(task, body["is_completed"]))
