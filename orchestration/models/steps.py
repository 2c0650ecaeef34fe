"""A task's steps: one model turn, tool call, instruction or memory read each, persisted before and after it
runs."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from lib.models import ChangedFieldsSave
from orchestration.models.tasks import Task


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


class Step(ConcurrentTransitionMixin, ChangedFieldsSave):
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
