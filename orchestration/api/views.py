"""REST API v1: thin views over services and selectors."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestration.api.errors import error_body
from orchestration.api.serializers import (
    ApprovalDecisionSerializer,
    QueueAssignSerializer,
    QueueBulkRetryResultSerializer,
    QueueBulkRetrySerializer,
    QueueCloseSerializer,
    QueueDecisionSerializer,
    QueueNoteSerializer,
    QueueResolveSerializer,
    QueueSendBackSerializer,
    TaskCreateSerializer,
    TaskListQuerySerializer,
    TaskSerializer,
    TaskSummarySerializer,
)
from orchestration.models import ApprovalDecision, Task, TaskState
from orchestration.selectors import task_detail_queryset, tasks_visible_to, tasks_workable_by
from orchestration.services.actors import user_actor
from orchestration.services.approvals import ApprovalNotPending, approval_decide
from orchestration.services.cancellation import task_cancel
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
    tasks_for_bulk_retry,
    tasks_retry_bulk,
)
from orchestration.services.submission import IdempotencyKeyReused, new_idempotency_key, task_submit

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces

_ERROR = inline_serializer(
    "Error",
    fields={
        "error": inline_serializer(
            "ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(required=False),
            },
        )
    },
)


def _idempotency_key(request: Request) -> str:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return new_idempotency_key()
    if not _KEY_PATTERN.match(key):
        raise ValidationError({IDEMPOTENCY_HEADER: ["Must be 1 to 255 printable ASCII characters without spaces."]})
    return key


def _task_response(request: Request, pk: str) -> Response:
    """The task as its detail endpoint shows it, to this caller."""
    user: Any = request.user
    return Response(TaskSerializer(task_detail_queryset(user).get(pk=pk), context={"request": request}).data)


class TaskListCreateView(generics.ListAPIView[Task]):
    serializer_class = TaskSummarySerializer

    def get_queryset(self) -> Any:
        query = TaskListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        tasks = tasks_visible_to(self.request.user)  # type: ignore[arg-type]
        state = query.validated_data.get("state")
        return tasks.filter(state=state) if state else tasks

    @extend_schema(
        parameters=[OpenApiParameter("state", OpenApiTypes.STR, enum=TaskState.values)],
        responses={200: TaskSummarySerializer(many=True), 400: _ERROR},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=TaskCreateSerializer,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Same key and body: the same task (200). Same key, other body: 422. "
                "Omitted: the server makes one and returns it.",
            ),
            OpenApiParameter("traceparent", OpenApiTypes.STR, OpenApiParameter.HEADER, description="W3C trace context"),
        ],
        responses={
            201: TaskSerializer,
            200: OpenApiResponse(TaskSerializer, description="An earlier submission with this key"),
            400: _ERROR,
            422: _ERROR,
        },
    )
    def post(self, request: Request) -> Response:
        key = _idempotency_key(request)
        body = TaskCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            submission = task_submit(
                owner=request.user,  # type: ignore[arg-type]
                goal=data["goal"],
                task_input=data["input"],
                session_id=data["session_id"],
                agent=data["agent"],
                metadata=data["metadata"],
                idempotency_key=key,
                trace_id=request._request.trace_id,  # type: ignore[attr-defined]
            )
        except IdempotencyKeyReused as exc:
            return Response(error_body("idempotency_key_reused", str(exc)), status=422)
        task = task_detail_queryset(request.user).get(pk=submission.task.pk)  # type: ignore[arg-type]
        code = status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK
        shown = TaskSerializer(task, context={"request": request}).data
        return Response(shown, status=code, headers={IDEMPOTENCY_HEADER: key})


class TaskDetailView(generics.RetrieveAPIView[Task]):
    serializer_class = TaskSerializer

    def get_queryset(self) -> Any:
        return task_detail_queryset(self.request.user)  # type: ignore[arg-type]

    @extend_schema(responses={200: TaskSerializer, 404: _ERROR})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class TaskCancelView(APIView):
    @extend_schema(request=None, responses={200: TaskSerializer, 404: _ERROR, 409: _ERROR})
    def post(self, request: Request, pk: str) -> Response:
        task = generics.get_object_or_404(tasks_visible_to(request.user), pk=pk)  # type: ignore[arg-type]
        if task.owner_id != request.user.pk and not request.user.has_perm(WORK_PERMISSION):
            # A client cancels its own tasks; anyone else's is an operator's decision, with its permission.
            return Response(
                error_body("not_permitted", "cancelling another client's task needs the queue permission"), status=403
            )
        task_cancel(task_id=task.pk, actor=user_actor(request.user))  # type: ignore[arg-type]
        return _task_response(request, pk)


class TaskApprovalView(APIView):
    """Approve or reject the task's held tool call. Needs the decide-approval permission; decided once."""

    @extend_schema(
        request=ApprovalDecisionSerializer,
        responses={200: TaskSerializer, 400: _ERROR, 403: _ERROR, 404: _ERROR, 409: _ERROR},
    )
    def post(self, request: Request, pk: str) -> Response:
        task = generics.get_object_or_404(tasks_visible_to(request.user), pk=pk)  # type: ignore[arg-type]
        body = ApprovalDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        pending = task.approvals.filter(decision=ApprovalDecision.PENDING).first()
        if pending is None:
            return Response(error_body("no_pending_approval", "this task holds no call for approval"), status=409)
        try:
            approval_decide(
                approval_id=pending.pk,
                user=request.user,  # type: ignore[arg-type]
                approve=body.validated_data["decision"] == "approve",
                message=body.validated_data["message"],
            )
        except ApprovalNotPending as exc:
            return Response(error_body("not_pending", str(exc)), status=409)
        return _task_response(request, pk)


_QUEUE_RESPONSES = {200: TaskSerializer, 400: _ERROR, 403: _ERROR, 404: _ERROR, 409: _ERROR}


class _QueueActionView(APIView):
    """An operator's action on a task in the manual queue, through the same services as the admin: 403 without
    the permission, 409 when the task moved meanwhile, is held by someone else, or the action does not fit."""

    body: type[serializers.Serializer[Any]] = QueueNoteSerializer

    def act(self, task_id: object, user: Any, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def post(self, request: Request, pk: str) -> Response:
        task = generics.get_object_or_404(tasks_workable_by(request.user), pk=pk)  # type: ignore[arg-type]
        body = self.body(data=request.data)
        body.is_valid(raise_exception=True)
        self.act(task.pk, request.user, dict(body.validated_data))
        return _task_response(request, pk)


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

    @extend_schema(
        request=QueueBulkRetrySerializer,
        responses={200: QueueBulkRetryResultSerializer, 400: _ERROR, 403: _ERROR, 409: _ERROR},
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
