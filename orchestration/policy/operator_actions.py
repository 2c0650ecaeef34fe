"""What people do to a task, and what follows: a decided approval resumes it at once; a cancellation stops it,
and a step that was running keeps its recorded outcome while nothing more is planned; an operator working the
manual queue retries a task now, resolves its failed step with a result, or closes it with a final result.

An action that does not fit the task as it stands raises NotApplicable, saying what would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestration.models import HandoffReason, RecoveryEvent, StepKind, Transition
from orchestration.policy.decision import Decision, Instruction, Move, Ruling, StepChange
from tools.envelope import ToolResult
from tools.errors import ErrorCode, RecoveryAction

H = HandoffReason
# Handoffs that a retry can mend once their cause is fixed (an upstream back, an endpoint's key renewed).
RETRIABLE_HANDOFFS = frozenset(
    {H.RETRIES_EXHAUSTED, H.MODEL_UNAVAILABLE, H.MODEL_REFUSED, H.DATABASE_FAILURES, H.REPLAN_CAP}
)
# Handoffs where one step's attempts ran out: a retry forgives that step's attempts.
_STEP_BUDGET_HANDOFFS = frozenset({H.RETRIES_EXHAUSTED, H.MODEL_UNAVAILABLE, H.MODEL_REFUSED})
# What fits the others instead.
_INSTEAD_OF_RETRY: dict[str, str] = {
    H.DICTIONARY_HANDOFF: "resolve the failed step with a result, or close the task",
    H.APPROVAL_NEEDED: "approve or reject the held call",
    H.AGENT_ASKED: "close the task with a final result",
    H.TURN_LIMIT: "close the task with a final result",
    H.UNKNOWN_AGENT: "close or cancel the task",
    H.BUDGET_EXCEEDED: "close or cancel the task",
}


# Handoffs the model can go on from, given a human's instruction.
SENDABLE_HANDOFFS = frozenset({H.AGENT_ASKED, H.DICTIONARY_HANDOFF, H.RETRIES_EXHAUSTED, H.REPLAN_CAP})
_INSTEAD_OF_SEND_BACK: dict[str, str] = {
    H.APPROVAL_NEEDED: "approve or reject the held call",
    H.TURN_LIMIT: "the agent has used all its turns: close the task with a final result",
    H.MODEL_UNAVAILABLE: "the model cannot be reached: retry once it is back",
    H.MODEL_REFUSED: "the model refused the request: fix the agent or the endpoint, then retry",
    H.DATABASE_FAILURES: "retry it",
}


class NotApplicable(Exception):
    """The action does not fit the task as it stands; the message says what would."""


@dataclass(frozen=True)
class FailedStep:
    """The task's last step, which failed."""

    kind: StepKind
    name: str
    attempt: int


@dataclass(frozen=True)
class QueuedTask:
    """A task in the manual queue, as the operator policy needs it."""

    handoff_reason: str
    """A HandoffReason, or empty for a task handed off before reasons were recorded."""
    failed_step: FailedStep | None
    pending_approval: bool
    now: datetime
    next_turn: int = 1
    """The model turn a resumed run asks for next."""


def operator_retry_decide(task: QueuedTask, *, actor: str, note: str) -> Decision:
    """Retry now: the failed step gets a fresh retry budget (its attempts so far no longer count; a re-plan cap
    starts again), and the task resumes at once, under the same idempotency keys."""
    if task.pending_approval:
        raise NotApplicable("a held call waits for approval: approve or reject it")
    if task.handoff_reason not in RETRIABLE_HANDOFFS:
        reason = H(task.handoff_reason).label if task.handoff_reason in H.values else "an unrecorded reason"
        instead = _INSTEAD_OF_RETRY.get(task.handoff_reason, "close or cancel the task")
        raise NotApplicable(f"a retry cannot mend a task handed off for {reason}: {instead}")
    step, change, granted = task.failed_step, None, "the re-plan count starts again"
    if task.handoff_reason == H.RETRIES_EXHAUSTED and (step is None or step.kind != StepKind.TOOL_CALL):
        raise NotApplicable("the task has no failed tool call to retry")
    if step is not None and task.handoff_reason in _STEP_BUDGET_HANDOFFS:
        change = StepChange(retries_forgiven=step.attempt)
        granted = f"a fresh retry budget for {step.name} (its {step.attempt} attempts no longer count)"
    elif task.handoff_reason == H.DATABASE_FAILURES:
        granted = "the count of database failures in a row starts again"
    rule = f"an operator's retry: {granted}; the task resumes under the same idempotency keys"
    return Decision(
        moves=(Move(Transition.RESUME, f"{actor}: retry now ({note})"),),
        rulings=(Ruling(RecoveryEvent.OPERATOR, RecoveryAction.RETRY, f"{actor} retried the task now: {note}", rule),),
        due_at=task.now,
        replans=0 if task.handoff_reason == H.REPLAN_CAP else None,
        step_change=change,
    )


def operator_send_back_decide(task: QueuedTask, *, actor: str, note: str, instruction: str) -> Decision:
    """Send the task back to the agent: the instruction reaches the model as a user message before its next turn
    (journalled, so a replay sends the same input); a failed call's error goes to the model as final."""
    if task.pending_approval:
        raise NotApplicable("a held call waits for approval: approve or reject it")
    if task.handoff_reason not in SENDABLE_HANDOFFS:
        reason = H(task.handoff_reason).label if task.handoff_reason in H.values else "an unrecorded reason"
        instead = _INSTEAD_OF_SEND_BACK.get(task.handoff_reason, "close or cancel the task")
        raise NotApplicable(f"the agent cannot go on from {reason}: {instead}")
    step = task.failed_step
    change = StepChange(decided_by=actor) if step is not None and step.kind == StepKind.TOOL_CALL else None
    rule = (
        f"an operator's instruction reaches the model before turn {task.next_turn}, journalled so that every "
        "replay sends the same input" + (f"; {step.name}'s error goes to the model as final" if change and step else "")
    )
    what = f"{actor} sent the task back to the agent: {note}"
    return Decision(
        moves=(Move(Transition.RESUME, f"{actor} sent the task back with an instruction"),),
        rulings=(Ruling(RecoveryEvent.OPERATOR, RecoveryAction.RESUME, what, rule),),
        due_at=task.now,
        replans=0 if task.handoff_reason == H.REPLAN_CAP else None,
        step_change=change,
        instruction=Instruction(text=instruction, before_turn=task.next_turn),
    )


def operator_resolve_decide(task: QueuedTask, *, actor: str, note: str, data: dict[str, Any]) -> Decision:
    """Resolve the failed tool call with a result the operator entered (checked against the tool's result schema
    by the caller): the tool does not run again; the agent resumes and sees the result as the call's."""
    if task.pending_approval:
        raise NotApplicable("a held call waits for approval: approve or reject it")
    step = task.failed_step
    if step is None or step.kind != StepKind.TOOL_CALL:
        raise NotApplicable("only a failed tool call can be resolved with a result")
    rule = "an operator's result stands in for the tool's: the tool does not run again, the agent sees the result"
    return Decision(
        moves=(Move(Transition.RESUME, f"{actor} entered the result of {step.name}"),),
        rulings=(
            Ruling(
                RecoveryEvent.OPERATOR,
                RecoveryAction.RESUME,
                f"{actor} resolved {step.name} with a result: {note}",
                rule,
            ),
        ),
        due_at=task.now,
        replans=0 if task.handoff_reason == H.REPLAN_CAP else None,
        step_change=StepChange(resolved_output=ToolResult.success(data).to_dict(), decided_by=actor),
    )


def operator_close_decide(*, actor: str, note: str, output: str) -> Decision:
    """Close the task with a final result the operator wrote: COMPLETED, the result marked as theirs."""
    what = f"{actor} closed the task with a final result: {note}"
    rule = "an operator's final result ends the task; the agent does not run again"
    return Decision(
        moves=(Move(Transition.CLOSE, f"closed by {actor}: {note}"),),
        rulings=(Ruling(RecoveryEvent.OPERATOR, RecoveryAction.STOP, what, rule),),
        result={"output": output, "written_by": actor},
    )


CANCELLED_MID_STEP_RULE = "a cancelled task keeps what its running step did and plans nothing more"


def approval_decided_decide(*, tool: str, approved: bool, message: str, now: datetime) -> Decision:
    verdict = "approved" if approved else f"rejected ({message or 'no message'})"
    return Decision(moves=(Move(Transition.RESUME, f"{tool} {verdict}"),), due_at=now)


def rejected_call_result(message: str) -> ToolResult:
    """What the model sees of a call an operator rejected: the operator's message, to re-plan on."""
    return ToolResult.failure(
        ErrorCode.REJECTED_BY_OPERATOR, message or "an operator rejected this call", retryable=False
    )


def cancel_decide(reason: str) -> Decision:
    return Decision(moves=(Move(Transition.CANCEL, reason or "cancelled on request"),))


def cancelled_mid_step_decide(*, step_seq: int, step_name: str, recorded: str) -> Decision:
    """The task was cancelled while the step ran; `recorded` says what was kept of its outcome."""
    what = f"the task was cancelled while step #{step_seq} {step_name} ran; {recorded}"
    return Decision(rulings=(Ruling(RecoveryEvent.CANCELLED, RecoveryAction.STOP, what, CANCELLED_MID_STEP_RULE),))
