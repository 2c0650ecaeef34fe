"""What is recorded about a task beside its steps: held calls and their approvals, the recovery policy's
decisions, operators' actions, and the SDK's spans."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from orchestration.models.steps import Step
from orchestration.models.tasks import Task
from tools.errors import RecoveryAction


class ApprovalDecision(models.TextChoices):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class Approval(models.Model):
    """A tool call held for a human. Decided once, by one operator, and consumed once by the resumed run."""

    step = models.OneToOneField(Step, on_delete=models.CASCADE, related_name="approval")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="approvals")
    tool = models.CharField(max_length=200)
    arguments = models.JSONField(help_text="The call as the model made it")
    reason = models.TextField(help_text="Why the contract holds this call")
    decision = models.CharField(max_length=10, choices=ApprovalDecision.choices, default=ApprovalDecision.PENDING)
    message = models.TextField(blank=True, help_text="Shown to the model with a rejection")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True, help_text="When the resumed run acted on the decision")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("decide_approval", "Can approve or reject tool calls held for approval")]

    def __str__(self) -> str:
        return f"{self.tool} for task {self.task_id} ({self.decision})"


class RecoveryEvent(models.TextChoices):
    TOOL_ERROR = "tool_error", "a tool returned an error"
    STEP_LOST = "step_lost", "a step outlived its deadline: its worker stopped or hung"
    MODEL_ERROR = "model_error", "the model request failed"
    MODEL_MISTAKE = "model_mistake", "the model called a tool its agent does not have"
    TURN_LIMIT = "turn_limit", "the agent reached its turn limit"
    DATABASE_ERROR = "database_error", "the run's database connection or transaction failed"
    BUDGET = "budget", "the next model request could cross the task's budget"
    CANCELLED = "cancelled", "the task was cancelled while a step ran"
    OPERATOR = "operator", "an operator decided"


class RecoveryDecision(models.Model):
    """One decision of the recovery policy: what went wrong, which rule decided, what follows and when."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="recovery_decisions")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    event = models.CharField(max_length=20, choices=RecoveryEvent.choices)
    action = models.CharField(max_length=10, choices=RecoveryAction.choices)
    what = models.TextField(help_text="What happened")
    rule = models.TextField(help_text="Which rule decided, and what it says")
    attempt = models.PositiveIntegerField(null=True, blank=True, help_text="The attempt of the step that failed")
    attempt_started_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the next attempt is due")
    envelope = models.JSONField(null=True, blank=True, help_text="The failed tool result, or the model error")
    actor = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "id"], name="recovery_task_idx")]

    def __str__(self) -> str:
        return f"{self.event} -> {self.action}"


class OperatorActionKind(models.TextChoices):
    CLAIM = "claim"
    RELEASE = "release"
    ASSIGN = "assign"
    NOTE = "note"
    RETRY = "retry", "retry now"
    RESOLVE = "resolve", "resolve the failed step with a result"
    SEND_BACK = "send_back", "send back to the agent with an instruction"
    CLOSE = "close", "close with a final result"
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"


class OperatorAction(models.Model):
    """The operators' audit log: who did what to a task in the manual queue, when, and why. Never edited."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="operator_actions")
    kind = models.CharField(max_length=20, choices=OperatorActionKind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(help_text="Why, in the operator's words")
    detail = models.JSONField(null=True, blank=True, help_text="What exactly: the result entered, the assignee")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "id"], name="operator_action_task_idx")]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor_id}"


class TaskSpan(models.Model):
    """A span of the agent SDK's trace of this task (model call, tool call, agent), kept for operators."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="spans")
    span_id = models.CharField(max_length=100)
    parent_id = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=50)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    data = models.JSONField(default=dict)
    error = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["task", "started_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.span_id}"
