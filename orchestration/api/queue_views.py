"""REST API v1 for the manual queue: operators' actions on tasks, through the same services as the admin."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.scopes import Scope
from orchestration.api.errors import error_body
from orchestration.api.queue_serializers import (
    QueueAssignSerializer,
    QueueBulkRetryResultSerializer,
    QueueBulkRetrySerializer,
    QueueCloseSerializer,
    QueueDecisionSerializer,
    QueueNoteSerializer,
    QueueResolveSerializer,
    QueueSendBackSerializer,
)
from orchestration.api.views import ERROR_SCHEMA, TaskSerializer, task_response
from orchestration.selectors import tasks_workable_by
from orchestration.services.bulk_retry import tasks_for_bulk_retry, tasks_retry_bulk
from orchestration.services.queue import (
    WORK_PERMISSION,
    task_assign,
    task_claim,
    task_close,
    task_note_add,
    task_release,
    task_resolve,
    task_retry_now,
    task_send_back,
)

_QUEUE_RESPONSES = {200: TaskSerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA}


class _QueueActionView(APIView):
    """An operator's action on a task in the manual queue, through the same services as the admin: 403 without
    the permission, 409 when the task moved meanwhile, is held by someone else, or the action does not fit."""

    body: type[serializers.Serializer[Any]] = QueueNoteSerializer
    required_scopes = {"POST": Scope.QUEUE_WORK}

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def post(self, request: Request, pk: str) -> Response:
        task = generics.get_object_or_404(tasks_workable_by(request.user), pk=pk)  # type: ignore[arg-type]
        body = self.body(data=request.data)
        body.is_valid(raise_exception=True)
        self.act(task.pk, request.user, dict(body.validated_data))
        return task_response(request, pk)


@extend_schema(request=None, responses=_QUEUE_RESPONSES)
class TaskClaimView(_QueueActionView):
    """Hold the task (exactly one operator at a time, until OPERATOR_CLAIM_SECONDS pass or it is released)."""

    body = serializers.Serializer

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        task_claim(task_id=task_id, user=user)


@extend_schema(request=None, responses=_QUEUE_RESPONSES)
class TaskReleaseView(_QueueActionView):
    """Let go of a task you hold."""

    body = serializers.Serializer

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        task_release(task_id=task_id, user=user)


@extend_schema(request=QueueAssignSerializer, responses=_QUEUE_RESPONSES)
class TaskAssignView(_QueueActionView):
    """Hand the task to a colleague who works the queue (needs the assign permission)."""

    body = QueueAssignSerializer

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        assignee = User.objects.filter(username=data["assignee"]).first()
        if assignee is None:
            raise ValidationError({"assignee": ["No such user."]})
        task_assign(task_id=task_id, user=user, assignee=assignee, note=data["note"])


@extend_schema(request=QueueNoteSerializer, responses=_QUEUE_RESPONSES)
class TaskNoteView(_QueueActionView):
    """Add an operator's note to the task, for whoever works it next."""

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        task_note_add(task_id=task_id, user=user, note=data["note"])


@extend_schema(request=QueueDecisionSerializer, responses=_QUEUE_RESPONSES)
class TaskRetryView(_QueueActionView):
    """Retry now: the failed step gets a fresh retry budget and the task resumes under the same keys."""

    body = QueueDecisionSerializer

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        task_retry_now(task_id=task_id, user=user, note=data["note"], seen_handoff_at=data["seen_handoff_at"])


@extend_schema(request=QueueResolveSerializer, responses=_QUEUE_RESPONSES)
class TaskResolveView(_QueueActionView):
    """Resolve the failed tool call with a result (checked against its result schema); the agent resumes."""

    body = QueueResolveSerializer

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        task_resolve(
            task_id=task_id, user=user, note=data["note"], data=data["result"], seen_handoff_at=data["seen_handoff_at"]
        )


@extend_schema(request=QueueSendBackSerializer, responses=_QUEUE_RESPONSES)
class TaskSendBackView(_QueueActionView):
    """Send the task back to the agent with an instruction it reads before its next turn (journalled)."""

    body = QueueSendBackSerializer

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        seen, note = data["seen_handoff_at"], data["note"]
        task_send_back(task_id=task_id, user=user, note=note, instruction=data["instruction"], seen_handoff_at=seen)


@extend_schema(request=QueueCloseSerializer, responses=_QUEUE_RESPONSES)
class TaskCloseView(_QueueActionView):
    """Close the task COMPLETED with a final result the operator wrote."""

    body = QueueCloseSerializer

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        task_close(
            task_id=task_id,
            user=user,
            note=data["note"],
            output=data["output"],
            seen_handoff_at=data["seen_handoff_at"],
        )


class QueueBulkRetryView(APIView):
    """After an incident: count the tasks handed off for one reason since a time, then (confirm) retry them all,
    each on its own, audited like a single retry. Needs the queue permission."""

    required_scopes = {"POST": Scope.QUEUE_WORK}

    @extend_schema(
        request=QueueBulkRetrySerializer,
        responses={200: QueueBulkRetryResultSerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA},
    )
    def post(self, request: Request) -> Response:
        if not request.user.has_perm(WORK_PERMISSION):
            return Response(error_body("not_permitted", "bulk retries need the queue permission"), status=403)
        body = QueueBulkRetrySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        count = tasks_for_bulk_retry(reason=data["reason"], since=data["since"]).count()
        if not data["confirm"]:
            return Response({"count": count, "retried": [], "refused": []})
        if data["expected_count"] is None:
            return Response(
                error_body("invalid", "confirm with the count you were shown", {"expected_count": ["required"]}),
                status=400,
            )
        if data["expected_count"] != count:
            message = f"{count} tasks match now, not the {data['expected_count']} you were shown: count again"
            return Response(error_body("task_moved", message), status=409)
        user: Any = request.user
        outcome = tasks_retry_bulk(user=user, reason=data["reason"], since=data["since"], note=data["note"])
        refused = [{"task": task_id, "why": why} for task_id, why in outcome.refused]
        return Response({"count": count, "retried": outcome.retried, "refused": refused})
