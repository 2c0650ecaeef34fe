"""What follows a step whose worker vanished: a retryable failure of that step, rolled back to the last completed
step and run again under the same idempotency key (so a step that keeps killing its worker reaches a human).

A step is lost when its task is taken over while the step is still RUNNING past its deadline (the worker died,
hung, or lost its database connection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent_runtime.failures import ModelFailure
from orchestration.models import RecoveryEvent, StepKind, TaskState, Transition
from orchestration.policy.decision import Decision, Limits, Move, Ruling, jitter_draw
from orchestration.policy.model_failures import TurnFailure, model_failure_decide
from orchestration.policy.tool_results import ToolOutcome, tool_failure_decide
from tools.contract import Contract
from tools.envelope import ToolResult
from tools.errors import ErrorCode, RecoveryAction

LOST_STEP_RESULT = ToolResult.failure(
    ErrorCode.STEP_LOST, "the worker running this step stopped before recording its result", retryable=True
)
ABANDONED_STEP_RULE = "an ended task plans nothing more: its abandoned step is closed as lost and not run again"


@dataclass(frozen=True)
class Checkpoint:
    """The last completed step before the lost one: the next run replays everything up to it."""

    seq: int
    ref: str


@dataclass(frozen=True)
class LostStep:
    seq: int
    kind: StepKind
    name: str
    attempt: int
    started_at: datetime
    deadline_at: datetime | None
    checkpoint: Checkpoint | None
    retries_forgiven: int = 0


@dataclass(frozen=True)
class LostStepTask:
    """The task the lost step belongs to, as the policy needs it."""

    state: TaskState
    replans: int
    contract: Contract | None
    """The active contract of the lost step's tool (None for a model turn, or a tool that no longer exists)."""
    now: datetime
    draw: float = field(default_factory=jitter_draw)


def lost_step_description(step: LostStep) -> str:
    """What an operator needs to know about a step whose worker vanished."""
    deadline = step.deadline_at.isoformat() if step.deadline_at else "none set"
    return (
        f"{ErrorCode.STEP_LOST}: step #{step.seq} {step.name} (attempt {step.attempt}) started at "
        f"{step.started_at.isoformat()}, deadline {deadline}, and its worker stopped or hung before recording a result"
    )


def lost_step_what(step: LostStep) -> str:
    checkpoint = step.checkpoint
    rolled_back = f"step #{checkpoint.seq} ({checkpoint.ref})" if checkpoint else "the start (no step had completed)"
    return (
        f"{lost_step_description(step)}; rolled back to {rolled_back}; "
        "the step runs again under the same idempotency key"
    )


def lost_step_output(step: LostStep) -> dict[str, Any]:
    """What the lost step is closed with: a tool call's failed envelope, or a model turn's error."""
    if step.kind == StepKind.TOOL_CALL:
        return LOST_STEP_RESULT.to_dict()
    return {"error": {"type": ErrorCode.STEP_LOST, "message": lost_step_what(step)}}


def lost_step_decide(step: LostStep, task: LostStepTask, limits: Limits) -> Decision:
    """A lost tool call is judged like a STEP_LOST result of that tool; a lost model turn like a failed request."""
    what = lost_step_what(step)
    if step.kind == StepKind.TOOL_CALL:
        outcome = ToolOutcome(
            tool=step.name,
            result=LOST_STEP_RESULT,
            contract=task.contract,
            attempt=step.attempt,
            retries_forgiven=step.retries_forgiven,
            task_replans=task.replans,
            now=task.now,
            event=RecoveryEvent.STEP_LOST,
            what=what,
            draw=task.draw,
        )
        return tool_failure_decide(outcome, limits)
    failure = TurnFailure(
        failure=ModelFailure(retryable=True, reason=what),
        attempts=step.attempt,
        retries_forgiven=step.retries_forgiven,
        task_state=task.state,
        now=task.now,
        event=RecoveryEvent.STEP_LOST,
        draw=task.draw,
    )
    return model_failure_decide(failure, limits)


def unfinished_tool_decide(now: datetime) -> Decision:
    """The call's result was recorded but the move back to PLANNED was not (the worker died between the two)."""
    return Decision(moves=(Move(Transition.FINISH_TOOL, "recovered after a lost worker"),), due_at=now)


def abandoned_step_decide(step: LostStep, task_state: TaskState) -> Decision:
    """A step still RUNNING on a task that has ended: its worker died after the task stopped. Nothing follows."""
    ruling = Ruling(
        RecoveryEvent.STEP_LOST,
        RecoveryAction.STOP,
        f"{lost_step_description(step)}; but the task had already ended ({task_state})",
        ABANDONED_STEP_RULE,
        LOST_STEP_RESULT.to_dict(),
    )
    return Decision(rulings=(ruling,))
