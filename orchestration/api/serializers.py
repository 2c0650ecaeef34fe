"""API shapes. Validation only: the services decide."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orchestration.api.fields import StrictCharField
from orchestration.models import (
    Approval,
    ApprovalDecision,
    HandoffReason,
    OperatorAction,
    RecoveryDecision,
    Step,
    Task,
    TaskState,
    TaskTransition,
)
from orchestration.spend import budget_figures


class UsageSerializer(serializers.Serializer[Any]):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False)


class StepSerializer(serializers.ModelSerializer[Step]):
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False)
    tool_contract_version = serializers.IntegerField(
        source="contract_version.number", allow_null=True, read_only=True, help_text="For tool calls"
    )

    class Meta:
        model = Step
        fields = [
            "seq",
            "kind",
            "name",
            "state",
            "attempt",
            "trace_id",
            "idempotency_key",
            "input",
            "output",
            "started_at",
            "deadline_at",
            "finished_at",
            "duration_ms",
            "input_tokens",
            "output_tokens",
            "cost",
            "tool_contract_version",
        ]


class TransitionSerializer(serializers.ModelSerializer[TaskTransition]):
    class Meta:
        model = TaskTransition
        fields = ["name", "from_state", "to_state", "actor", "reason", "created_at"]


class RecoveryDecisionSerializer(serializers.ModelSerializer[RecoveryDecision]):
    step_seq = serializers.IntegerField(source="step.seq", allow_null=True, read_only=True)

    class Meta:
        model = RecoveryDecision
        fields = [
            "created_at",
            "step_seq",
            "event",
            "what",
            "rule",
            "action",
            "attempt",
            "attempt_started_at",
            "next_attempt_at",
            "envelope",
            "actor",
        ]


class OperatorActionSerializer(serializers.ModelSerializer[OperatorAction]):
    actor = serializers.CharField(source="actor.username", read_only=True)

    class Meta:
        model = OperatorAction
        fields = ["created_at", "kind", "actor", "note", "detail"]


class PendingApprovalSerializer(serializers.ModelSerializer[Approval]):
    step_seq = serializers.IntegerField(source="step.seq", read_only=True)

    class Meta:
        model = Approval
        fields = ["id", "step_seq", "tool", "arguments", "reason", "created_at"]


class ApprovalDecisionSerializer(serializers.Serializer[Any]):
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    message = StrictCharField(max_length=2000, required=False, default="", allow_blank=True)


class HandoffSerializer(serializers.Serializer[Any]):
    reason = serializers.ChoiceField(
        choices=HandoffReason.choices, allow_blank=True, help_text="Why a human must take over (empty: not recorded)"
    )
    tool = serializers.CharField(help_text="The tool involved, or empty")
    error_code = serializers.CharField(help_text="The error code involved, or empty")
    since = serializers.DateTimeField(allow_null=True, help_text="When the task was handed off")


class BudgetSerializer(serializers.Serializer[Any]):
    tokens = serializers.IntegerField(allow_null=True, help_text="The task's token budget; null: no limit")
    tokens_spent = serializers.IntegerField()
    tokens_remaining = serializers.IntegerField(allow_null=True)
    cost_usd = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True, coerce_to_string=False)
    cost_spent_usd = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False)
    cost_remaining_usd = serializers.DecimalField(
        max_digits=14, decimal_places=6, allow_null=True, coerce_to_string=False
    )


class TaskSummarySerializer(serializers.ModelSerializer[Task]):
    usage = serializers.SerializerMethodField()
    budget = serializers.SerializerMethodField()
    handoff = serializers.SerializerMethodField()
    agent_version = serializers.IntegerField(
        source="agent_version.number", allow_null=True, read_only=True, help_text="The version the task runs on"
    )
    rollout_arm = serializers.CharField(
        read_only=True,
        help_text='"stable" or "canary" when a rollout chose the version, "forced" when the client did, else ""',
    )

    class Meta:
        model = Task
        fields = [
            "id",
            "state",
            "state_reason",
            "handoff",
            "goal",
            "agent",
            "agent_version",
            "rollout_arm",
            "routing_key",
            "session_id",
            "trace_id",
            "idempotency_key",
            "result",
            "usage",
            "budget",
            "created_at",
            "updated_at",
            "finished_at",
        ]

    @extend_schema_field(HandoffSerializer(allow_null=True))
    def get_handoff(self, task: Task) -> dict[str, Any] | None:
        """Why the task waits for a human (in MANUAL_REVIEW only; the state reason says it in words)."""
        if task.state != TaskState.MANUAL_REVIEW:
            return None
        handoff = {
            "reason": task.handoff_reason,
            "tool": task.handoff_tool,
            "error_code": task.handoff_error_code,
            "since": task.handed_off_at,
        }
        return dict(HandoffSerializer(handoff).data)

    @extend_schema_field(BudgetSerializer)
    def get_budget(self, task: Task) -> dict[str, Any]:
        return dict(BudgetSerializer(budget_figures(task)).data)

    def get_usage(self, task: Task) -> dict[str, Any]:
        return dict(
            UsageSerializer(
                {"input_tokens": task.input_tokens, "output_tokens": task.output_tokens, "cost": task.cost}
            ).data
        )


class TaskSerializer(TaskSummarySerializer):
    steps = StepSerializer(many=True, read_only=True)
    transitions = TransitionSerializer(many=True, read_only=True)
    recovery = RecoveryDecisionSerializer(
        source="recovery_decisions",
        many=True,
        read_only=True,
        help_text="Every decision of the recovery policy: what failed, which rule decided, what follows and when",
    )
    pending_approval = serializers.SerializerMethodField()
    claimed_by = serializers.CharField(
        source="claimed_by.username", allow_null=True, read_only=True, help_text="The operator holding the task"
    )
    operator_actions = OperatorActionSerializer(
        many=True, read_only=True, help_text="What operators did to the task: who, when, what, why"
    )

    class Meta(TaskSummarySerializer.Meta):
        fields = [
            *TaskSummarySerializer.Meta.fields,
            "input",
            "metadata",
            "next_run_at",
            "pending_approval",
            "claimed_by",
            "claim_expires_at",
            "steps",
            "transitions",
            "recovery",
            "operator_actions",
        ]

    def to_representation(self, task: Task) -> dict[str, Any]:
        data = super().to_representation(task)
        if not data["operator_actions"] and data["claimed_by"] is None:
            return data  # nothing to hide: spares the permission lookup (two queries)
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if user is None or not (user.is_staff or user.has_perm("orchestration.work_queue")):
            # A client sees what happened to its task, not operators' notes or who works it.
            data["operator_actions"], data["claimed_by"] = [], None
        return data

    @extend_schema_field(PendingApprovalSerializer(allow_null=True))
    def get_pending_approval(self, task: Task) -> dict[str, Any] | None:
        pending = [a for a in task.approvals.all() if a.decision == ApprovalDecision.PENDING]
        return dict(PendingApprovalSerializer(pending[0]).data) if pending else None


class TaskListQuerySerializer(serializers.Serializer[Any]):
    state = serializers.ChoiceField(choices=TaskState.choices, required=False)
