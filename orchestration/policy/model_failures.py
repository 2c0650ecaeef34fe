"""What follows a failed model request: the turn again after a backoff (never before the endpoint's Retry-After),
or a human, when no retry can mend it or the model retry policy is used up."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agent_runtime.failures import ModelFailure
from orchestration.models import HandoffReason, RecoveryEvent, TaskState, Transition
from orchestration.policy.decision import (
    Decision,
    Handoff,
    Limits,
    Move,
    Ruling,
    backoff,
    jitter_draw,
    retry_policy_text,
)
from tools.errors import ErrorCode, RecoveryAction

FATAL_MODEL_ERROR_RULE = "a model error no retry can mend (credentials, a refused request, an unusable answer): a human"


@dataclass(frozen=True)
class TurnFailure:
    failure: ModelFailure
    attempts: int
    """Attempts of the failed turn so far (1 when no turn was recorded)."""
    task_state: TaskState
    now: datetime
    retries_forgiven: int = 0
    """Attempts an operator's retry took off the budget."""
    event: RecoveryEvent = RecoveryEvent.MODEL_ERROR
    draw: float = field(default_factory=jitter_draw)


def model_failure_decide(turn: TurnFailure, limits: Limits) -> Decision:
    failure, attempts = turn.failure, turn.attempts - turn.retries_forgiven  # the attempts the policy counts
    what = f"model turn failed (attempt {turn.attempts}): {failure.reason}"
    envelope: dict[str, Any] = {"retryable": failure.retryable, "reason": failure.reason}
    if not failure.retryable:
        reason = f"fatal model error: {failure.reason}"
        return _hand_off(turn, what, FATAL_MODEL_ERROR_RULE, reason, envelope, HandoffReason.MODEL_REFUSED)
    policy = limits.model_retry
    rule = (
        f"model retry policy: {retry_policy_text(policy, limits.jitter)}, never sooner than the endpoint's Retry-After"
    )
    if attempts > policy.max_retries or turn.task_state not in (TaskState.RECEIVED, TaskState.PLANNED):
        reason = f"model request failed {attempts} times; last: {failure.reason}"
        return _hand_off(turn, what, f"{rule}; retries used up", reason, envelope, HandoffReason.MODEL_UNAVAILABLE)
    delay = backoff(attempt=attempts, policy=policy, jitter=limits.jitter, draw=turn.draw)
    if failure.retry_after_seconds is not None:  # the endpoint said when; never sooner
        delay = max(delay, timedelta(seconds=failure.retry_after_seconds))
    due = turn.now + delay
    return Decision(
        rulings=(
            Ruling(
                turn.event, RecoveryAction.RETRY, what, f"{rule}; retry {attempts} of {policy.max_retries}", envelope
            ),
        ),
        due_at=due,
        waiting_reason=f"model request failed: {failure.reason}; attempt {turn.attempts + 1} due at {due.isoformat()}",
    )


def _hand_off(
    turn: TurnFailure, what: str, rule: str, reason: str, envelope: dict[str, Any], why: HandoffReason
) -> Decision:
    code = ErrorCode.STEP_LOST if turn.event == RecoveryEvent.STEP_LOST else ""
    return Decision(
        moves=(Move(Transition.HAND_OFF, reason),),
        rulings=(Ruling(turn.event, RecoveryAction.HANDOFF, what, rule, envelope),),
        handoff=Handoff(why, error_code=code),
    )
