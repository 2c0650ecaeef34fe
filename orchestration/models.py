"""Tasks, their steps and their transition log. PostgreSQL is the source of truth for all three."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models.functions import Cast, Upper
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from tools.errors import RecoveryAction


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


class Task(ConcurrentTransitionMixin, models.Model):
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


class StepKind(models.TextChoices):
    MODEL_TURN = "model_turn"
    TOOL_CALL = "tool_call"
    OPERATOR_INSTRUCTION = "operator_instruction", "operator instruction"
    MEMORY_RECALL = "memory_recall", "memory recall"
    SUMMARY = "summary", "memory summary"


class StepState(models.TextChoices):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Step(ConcurrentTransitionMixin, models.Model):
    """One model turn or one tool call, persisted before it runs and again when it ends."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="steps")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=StepKind.choices)
    # Identity within the task that survives replay: "turn:<n>" for a model turn, "call:<turn>:<call_id>" for a tool,
    # "instruction:<n>" for an operator's instruction.
    ref = models.CharField(max_length=200)
    name = models.CharField(max_length=200, help_text="Model name or tool name")
    contract_version = models.ForeignKey(
        "tools.ToolContractVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The tool contract version this call ran with",
    )
    state = FSMField(default=StepState.RUNNING, choices=StepState.choices, protected=True)
    attempt = models.PositiveIntegerField(default=1)
    idempotency_key = models.CharField(max_length=400, unique=True)
    trace_id = models.CharField(max_length=32)

    input = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)

    started_at = models.DateTimeField()
    deadline_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When this attempt must have ended (the tool's timeout, or the model-call timeout); past it, "
        "with no word from its worker, the step is taken back and run again",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    retries_forgiven = models.PositiveIntegerField(
        default=0, help_text="Attempts an operator's retry took off this step's retry budget"
    )
    decided_by = models.CharField(
        max_length=200,
        blank=True,
        help_text="The operator who decided this step's outcome (user:<name>): entered its result instead of the "
        "tool, or gave its failure to the model as final",
    )

    class Meta:
        ordering = ["task", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["task", "seq"], name="step_task_seq"),
            models.UniqueConstraint(fields=["task", "ref"], name="step_task_ref"),
        ]
        # The sweeper looks for running steps past their deadline every few seconds: only running ones are indexed.
        indexes = [
            models.Index(
                fields=["deadline_at"], condition=models.Q(state=StepState.RUNNING), name="step_running_deadline_idx"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind} {self.name} ({self.state})"

    @transition(field=state, source=StepState.RUNNING, target=StepState.SUCCEEDED)
    def succeed(self) -> None:
        """The step's output is recorded and final: replay reuses it."""

    @transition(field=state, source=StepState.RUNNING, target=StepState.FAILED)
    def fail(self) -> None:
        """The step ended in an error; a retry runs it again under the same key."""

    @transition(field=state, source=StepState.FAILED, target=StepState.SUCCEEDED)
    def resolve(self) -> None:
        """An operator entered the result of a failed step; the tool does not run again."""

    @transition(field=state, source=[StepState.RUNNING, StepState.FAILED], target=StepState.RUNNING)
    def restart(self) -> None:
        """Run again (a retry, or a worker lost mid-step): same key, next attempt."""


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
