"""REST API v1: thin views over services and selectors."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.openapi import ERROR_SCHEMA
from access.scopes import Scope
from agent_runtime.catalog import Budget
from orchestration.api.errors import error_body
from orchestration.api.serializers import (
    ApprovalDecisionSerializer,
    TaskListQuerySerializer,
    TaskSerializer,
    TaskSummarySerializer,
)
from orchestration.api.submission_serializers import TaskCreateSerializer
from orchestration.models import ApprovalDecision, Task, TaskState
from orchestration.selectors import task_detail_of_created, task_detail_queryset, tasks_visible_to
from orchestration.services.actors import user_actor
from orchestration.services.approvals import ApprovalNotPending, approval_decide
from orchestration.services.cancellation import task_cancel
from orchestration.services.queue import (
    WORK_PERMISSION,
)
from orchestration.services.submission import (
    AgentVersionUnknown,
    IdempotencyKeyReused,
    new_idempotency_key,
    task_submit,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
FORCE_VERSION_PERMISSION = "agent_runtime.force_agent_version"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, no spaces
_KEY_PATTERN = re.compile(KEY_PATTERN)


def _idempotency_key(request: Request) -> str:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return new_idempotency_key()
    if not _KEY_PATTERN.match(key):
        raise ValidationError({IDEMPOTENCY_HEADER: ["Must be 1 to 255 printable ASCII characters without spaces."]})
    return key


def task_response(request: Request, pk: str) -> Response:
    """The task as its detail endpoint shows it, to this caller."""
    user: Any = request.user
    return Response(TaskSerializer(task_detail_queryset(user).get(pk=pk), context={"request": request}).data)


class TaskListCreateView(generics.ListAPIView[Task]):
    serializer_class = TaskSummarySerializer
    required_scopes = {"GET": Scope.TASKS_READ, "POST": Scope.TASKS_SUBMIT}

    def get_queryset(self) -> Any:
        # A plain dict: DRF reads an empty value in a QueryDict as an omitted one, and `?state=` would list them all.
        query = TaskListQuerySerializer(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        tasks = tasks_visible_to(self.request.user)  # type: ignore[arg-type]
        state = query.validated_data.get("state")
        return tasks.filter(state=state) if state else tasks

    @extend_schema(
        parameters=[OpenApiParameter("state", OpenApiTypes.STR, enum=TaskState.values)],
        responses={200: TaskSummarySerializer(many=True), 400: ERROR_SCHEMA},
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
                pattern=KEY_PATTERN,
                description="Same key and body: the same task (200). Same key, other body: 422. "
                "Omitted: the server makes one and returns it.",
            ),
            OpenApiParameter("traceparent", OpenApiTypes.STR, OpenApiParameter.HEADER, description="W3C trace context"),
        ],
        responses={
            201: TaskSerializer,
            200: OpenApiResponse(TaskSerializer, description="An earlier submission with this key"),
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
            422: ERROR_SCHEMA,
        },
    )
    def post(self, request: Request) -> Response:
        key = _idempotency_key(request)
        body = TaskCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        forced = data.get("agent_version")
        if forced is not None and not request.user.has_perm(FORCE_VERSION_PERMISSION):
            return Response(
                error_body("not_permitted", "choosing the agent version needs the force-version permission"),
                status=403,
            )
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
                budget=Budget(**data["budget"]) if data.get("budget") else None,  # {} is no budget asked
                routing_key=data["routing_key"],
                forced_version=forced,
            )
        except IdempotencyKeyReused as exc:
            return Response(error_body("idempotency_key_reused", str(exc)), status=422)
        except AgentVersionUnknown as exc:
            raise ValidationError({"agent_version": [str(exc)]}) from None
        if submission.first_transition is not None:
            task = task_detail_of_created(submission.task, submission.first_transition)
        else:
            task = task_detail_queryset(request.user).get(pk=submission.task.pk)  # type: ignore[arg-type]
        code = status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK
        shown = TaskSerializer(task, context={"request": request}).data
        return Response(shown, status=code, headers={IDEMPOTENCY_HEADER: key})


class TaskDetailView(generics.RetrieveAPIView[Task]):
    serializer_class = TaskSerializer
    required_scopes = {"GET": Scope.TASKS_READ}

    def get_queryset(self) -> Any:
        return task_detail_queryset(self.request.user)  # type: ignore[arg-type]

    @extend_schema(responses={200: TaskSerializer, 404: ERROR_SCHEMA})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class TaskCancelView(APIView):
    required_scopes = {"POST": Scope.TASKS_CANCEL}

    @extend_schema(request=None, responses={200: TaskSerializer, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA})
    def post(self, request: Request, pk: str) -> Response:
        task = generics.get_object_or_404(tasks_visible_to(request.user), pk=pk)  # type: ignore[arg-type]
        if task.owner_id != request.user.pk and not request.user.has_perm(WORK_PERMISSION):
            # A client cancels its own tasks; anyone else's is an operator's decision, with its permission.
            return Response(
                error_body("not_permitted", "cancelling another client's task needs the queue permission"), status=403
            )
        task_cancel(task_id=task.pk, actor=user_actor(request.user))  # type: ignore[arg-type]
        return task_response(request, pk)


class TaskApprovalView(APIView):
    """Approve or reject the task's held tool call. Needs the decide-approval permission; decided once."""

    required_scopes = {"POST": Scope.APPROVALS_DECIDE}

    @extend_schema(
        request=ApprovalDecisionSerializer,
        responses={200: TaskSerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA},
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
        return task_response(request, pk)
