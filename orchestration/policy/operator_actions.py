"""What people do to a task, and what follows: a decided approval resumes it at once; a cancellation stops it,
and a step that was running keeps its recorded outcome while nothing more is planned.

The operator console's actions (retry now, resolve with a result, send back with an instruction) belong here.
"""

from __future__ import annotations

from datetime import datetime

from orchestration.models import RecoveryEvent, Transition
from orchestration.policy.decision import Decision, Move, Ruling
from tools.envelope import ToolResult
from tools.errors import ErrorCode, RecoveryAction

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
