"""Tasks and their transition log: the state machine and the audit of every move. PostgreSQL is the source of
truth for both."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models.functions import Cast, Upper
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from lib.models import ChangedFieldsSave


class TaskState(models.TextChoices):
    RECEIVED = "RECEIVED"
    PLANNED = "PLANNED"
    TOOL_RUNNING = "TOOL_RUNNING"
    TOOL_FAILED_RETRYABLE = "TOOL_FAILED_RETRYABLE"
    TOOL_FAILED_FATAL = "TOOL_FAILED_FATAL"
    COMPLETED = "COMPLETED"
    MANUAL_REVIEW = "MANUAL_REVIEW"
    CANCELLED = "CANCELLED"


S = TaskState
# A worker may pick these up when they are due.
RUNNABLE_STATES = (S.RECEIVED, S.PLANNED, S.TOOL_RUNNING, S.TOOL_FAILED_RETRYABLE)
TERMINAL_STATES = (S.COMPLETED, S.TOOL_FAILED_FATAL, S.CANCELLED)
OPEN_STATES = (*RUNNABLE_STATES, S.MANUAL_REVIEW)


class Transition(models.TextChoices):
    """One name per move of a task, as the transition log records it. Each but SUBMIT is a method of Task below."""

    SUBMIT = "submit", "accepted (the task is created in RECEIVED)"
    PLAN = "plan"
    START_TOOL = "start_tool"
    FINISH_TOOL = "finish_tool"
    FAIL_TOOL_RETRYABLE = "fail_tool_retryable"
    FAIL_TOOL_FATAL = "fail_tool_fatal"
    COMPLETE = "complete"
    HAND_OFF = "hand_off"
    RESUME = "resume"
    CLOSE = "close"
    CANCEL = "cancel"


class HandoffReason(models.TextChoices):
    """Why a task is in the manual queue, as a value operators filter on (the state reason says it in words)."""

    RETRIES_EXHAUSTED = "retries_exhausted", "retries used up"
    DICTIONARY_HANDOFF = "dictionary_handoff", "the error dictionary says a human"
    APPROVAL_NEEDED = "approval_needed", "approval needed"
    AGENT_ASKED = "agent_asked", "the agent asked for a human"
    TURN_LIMIT = "turn_limit", "turn limit reached"
    REPLAN_CAP = "replan_cap", "re-plan cap used up"
    MODEL_UNAVAILABLE = "model_unavailable", "model unavailable"
    MODEL_REFUSED = "model_refused", "model refused the request or its answer was unusable"
    BUDGET_EXCEEDED = "budget_exceeded", "budget exceeded"
    UNKNOWN_AGENT = "unknown_agent", "unknown agent"
    DATABASE_FAILURES = "database_failures", "repeated database failures"


class Task(ConcurrentTransitionMixin, ChangedFieldsSave):
    """One submitted agent task. `state` moves only through the transitions below, called by services."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tasks")
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of the canonical submitted body")
    trace_id = models.CharField(max_length=32, db_index=True)

    goal = models.TextField()
    input = models.JSONField(default=dict)
    session_id = models.CharField(max_length=255, blank=True)
    agent = models.CharField(max_length=100)
    agent_version = models.ForeignKey(
        "agent_runtime.AgentVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The agent configuration this task runs with, fixed at submission",
    )
    metadata = models.JSONField(default=dict)
    # How the version was chosen, fixed at submission: the rollout then running, the arm the routing key's hash
    # fell in ("stable", "canary"; "forced" when a permitted client named the version; "" with no rollout).
    # Defaults in the database too: a process of the previous release, still running during a deploy, inserts
    # tasks without these columns.
    routing_key = models.CharField(
        max_length=255, blank=True, default="", db_default="", help_text="What the canary assignment hashed"
    )
    rollout = models.ForeignKey(
        "agent_runtime.Rollout", on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    rollout_arm = models.CharField(max_length=10, blank=True, default="", db_default="")

    state = FSMField(default=S.RECEIVED, choices=TaskState.choices, protected=True, db_index=True)
    state_reason = models.TextField(blank=True, help_text="Why the task is in its current state")
    result = models.JSONField(null=True, blank=True)

    # The latest handoff to a human: why, as a value; the tool and error code involved; since when.
    handoff_reason = models.CharField(max_length=30, choices=HandoffReason.choices, blank=True)
    handoff_tool = models.CharField(max_length=200, blank=True)
    handoff_error_code = models.CharField(max_length=64, blank=True)
    handed_off_at = models.DateTimeField(null=True, blank=True)
    # The operator working the task in the manual queue, until when (a claim expires on its own).
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    claim_expires_at = models.DateTimeField(null=True, blank=True)

    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    # What the task may spend, fixed at submission (the client's, else its agent version's, else the settings');
    # null: no limit. Checked before every model request against the request's worst case.
    token_budget = models.PositiveBigIntegerField(null=True, blank=True)
    cost_budget = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    replans = models.PositiveIntegerField(
        default=0, help_text="Failed calls handed back to the model (bad arguments, unknown tools, refusals)"
    )

    # Scheduling: when the next step is due, when a message was last sent for it, and who runs it now.
    next_run_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "idempotency_key"], name="task_owner_idempotency_key"),
        ]
        permissions = [
            ("work_queue", "Can claim and act on tasks in the manual queue"),
            ("assign_task", "Can assign tasks in the manual queue to a colleague"),
            ("override_claim", "Can act on tasks another operator holds"),
        ]
        indexes = [
            models.Index(fields=["state", "next_run_at"], name="task_due_idx"),
            # The manual queue, oldest first, and its filters.
            models.Index(
                fields=["handed_off_at"], condition=models.Q(state=S.MANUAL_REVIEW), name="task_manual_queue_idx"
            ),
            # The task list, newest first (the admin orders by -created_at, -id): read backwards, no sort.
            models.Index(fields=["created_at", "id"], name="task_created_idx"),
            # The admin's "=" searches compare UPPER(field::text): one index each, so a search is a BitmapOr with
            # the goal's trigram index (PostgreSQL only, migration 0012), not a scan of every task.
            models.Index(Upper(Cast("id", models.TextField())), name="task_search_id_idx"),
            models.Index(Upper("trace_id"), name="task_search_trace_idx"),
            models.Index(Upper("idempotency_key"), name="task_search_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.state})"

    # --- transitions: the graph only; services guard, record and schedule -------------------------------
    @transition(field=state, source=S.RECEIVED, target=S.PLANNED)
    def plan(self) -> None:
        """The model has made its first decision."""

    @transition(field=state, source=[S.PLANNED, S.TOOL_FAILED_RETRYABLE, S.TOOL_RUNNING], target=S.TOOL_RUNNING)
    def start_tool(self) -> None:
        """A tool call begins (TOOL_RUNNING -> TOOL_RUNNING when a lost call is run again)."""

    @transition(field=state, source=S.TOOL_RUNNING, target=S.PLANNED)
    def finish_tool(self) -> None:
        """The tool's result is recorded and goes back to the model."""

    @transition(field=state, source=S.TOOL_RUNNING, target=S.TOOL_FAILED_RETRYABLE)
    def fail_tool_retryable(self) -> None:
        """The call failed, or outlived its deadline, and will be retried after a backoff."""

    @transition(field=state, source=S.TOOL_RUNNING, target=S.TOOL_FAILED_FATAL)
    def fail_tool_fatal(self) -> None:
        """The call failed in a way no retry or re-plan can mend."""

    @transition(field=state, source=[S.RECEIVED, S.PLANNED], target=S.COMPLETED)
    def complete(self) -> None:
        """The model gave its final answer."""

    @transition(field=state, source=[*RUNNABLE_STATES], target=S.MANUAL_REVIEW)
    def hand_off(self) -> None:
        """A human must take over (handoff tool, retries used up, turn limit)."""

    @transition(field=state, source=S.MANUAL_REVIEW, target=S.PLANNED)
    def resume(self) -> None:
        """A human decided (an approval, a rejection, a retry, a result): the agent goes on."""

    @transition(field=state, source=S.MANUAL_REVIEW, target=S.COMPLETED)
    def close(self) -> None:
        """An operator finished the task with a final result of their own."""

    @transition(field=state, source=[*OPEN_STATES], target=S.CANCELLED)
    def cancel(self) -> None:
        """A client or operator stopped the task."""


class QueueTask(Task):
    """The manual queue: tasks waiting for a human, as operators work them in the admin."""

    class Meta:
        proxy = True
        verbose_name = "task in the manual queue"
        verbose_name_plural = "manual queue"


class TaskTransition(models.Model):
    """The audit log: every state change of every task, who or what made it, and why."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="transitions")
    name = models.CharField(max_length=50, choices=Transition.choices)
    from_state = models.CharField(max_length=32, choices=TaskState.choices, blank=True)
    to_state = models.CharField(max_length=32, choices=TaskState.choices)
    actor = models.CharField(max_length=200, help_text="user:<name> or worker:<host>:<pid>")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state} ({self.name})"
